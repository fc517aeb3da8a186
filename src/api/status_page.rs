//! The status page at `/`: one static HTML document that polls `/v2/status` and draws lanes,
//! clusters, the decision mix of the last minutes and the gate reports the lanes keep.

use actix_web::HttpResponse;

/// The page (no external assets: it works on an offline machine).
pub const PAGE: &str = include_str!("status.html");

pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}
