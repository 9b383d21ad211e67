//! ListImages, with CRI's filter (one image by id, tag or digest).

use k8s_cri::v1::{ListImagesRequest, ListImagesResponse};
use tonic::Status;

use crate::image::{find, parse_name, to_cri};
use crate::state::errors::{internal, invalid};
use crate::state::Runtime;

pub async fn list_images(
    rt: &Runtime,
    req: ListImagesRequest,
) -> Result<ListImagesResponse, Status> {
    let wanted = req
        .filter
        .and_then(|f| f.image)
        .map(|i| i.image)
        .filter(|s| !s.is_empty());
    let images = match wanted {
        Some(s) => {
            let name = parse_name(&s).map_err(|e| invalid("filter.image.image", e))?;
            find(rt, &name)
                .map_err(|e| internal("reading images", e))?
                .into_iter()
                .collect()
        }
        None => rt
            .store
            .list_images()
            .map_err(|e| internal("reading images", e))?,
    };
    Ok(ListImagesResponse {
        images: images.iter().map(|i| to_cri(rt, i)).collect(),
    })
}
