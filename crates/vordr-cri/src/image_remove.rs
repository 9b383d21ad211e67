//! RemoveImage: by id, tag or digest, the whole image goes (as the CRI
//! says), then blobs and snapshots no image (and no pull in progress) uses
//! are freed. A missing image is success. An image a container uses (or
//! mounts as an image volume) is refused, as CRI-O does. Pulls in progress
//! never make it wait for the network.

use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};
use tonic::Status;

use crate::image::{collect_garbage, find, parse_name};
use crate::state::errors::{internal, invalid};
use crate::state::Runtime;

pub async fn remove_image(
    rt: &Runtime,
    req: RemoveImageRequest,
) -> Result<RemoveImageResponse, Status> {
    let spec = req.image.map(|i| i.image).unwrap_or_default();
    let name = parse_name(&spec).map_err(|e| invalid("image.image", e))?;
    if let Some(img) = find(rt, &name).map_err(|e| internal("reading images", e))? {
        // Its snapshots are a container's lower dirs: keep it while used (as CRI-O).
        let used = rt
            .store
            .container_image_ids()
            .map_err(|e| internal("reading containers", e))?;
        if used.contains(&img.id) {
            return Err(Status::failed_precondition(format!(
                "image {} is in use by a container",
                img.id
            )));
        }
        // An image volume's layers are mounted too.
        if crate::container::image_volume::images_in_use(rt)?.contains(&img.id) {
            return Err(Status::failed_precondition(format!(
                "image {} is in use by a container as an image volume",
                img.id
            )));
        }
        rt.store
            .delete_image(&img.id)
            .map_err(|e| internal("removing the image", e))?;
        tracing::info!(id = %img.id, "image removed");
    }
    let (blobs, snaps) = collect_garbage(rt)
        .await
        .map_err(|e| internal("freeing image content", e))?;
    if blobs + snaps > 0 {
        tracing::info!(blobs, snapshots = snaps, "freed unused image content");
    }
    Ok(RemoveImageResponse {})
}
