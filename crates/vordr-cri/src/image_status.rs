//! ImageStatus: the image or nothing (not an error), with `verbose` info.

use std::collections::HashMap;

use k8s_cri::v1::{ImageStatusRequest, ImageStatusResponse};
use tonic::Status;

use crate::image::{find, parse_name, to_cri};
use crate::state::errors::{internal, invalid};
use crate::state::Runtime;

pub async fn image_status(
    rt: &Runtime,
    req: ImageStatusRequest,
) -> Result<ImageStatusResponse, Status> {
    let spec = req.image.map(|i| i.image).unwrap_or_default();
    let name = parse_name(&spec).map_err(|e| invalid("image.image", e))?;
    let Some(img) = find(rt, &name).map_err(|e| internal("reading images", e))? else {
        return Ok(ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if req.verbose {
        let config: serde_json::Value = img
            .id
            .parse()
            .ok()
            .and_then(|d| rt.puller.content().read(&d).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let v = serde_json::json!({
            "imageSpec": config,
            "layers": img.layers,
            "chainIDs": img.chain_ids,
            "snapshots": rt.puller.snapshot_dirs(
                &img.chain_ids.iter().filter_map(|c| c.parse().ok()).collect::<Vec<_>>()
            ),
        });
        info.insert("info".to_string(), v.to_string());
    }
    Ok(ImageStatusResponse {
        image: Some(to_cri(rt, &img)),
        info,
    })
}
