//! The HTTP routes: request parsing and checks, auth scopes, and the translation of writes into
//! input events. Each handler is thin: the broker's core decides, the read model answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::explain::explain;
use super::model::{GetDecision, GetHealth, GetLaneStats, GetMix, GetView, ReadModel};
use super::{Control, Secret};
use crate::core::view::RouterView;
use crate::events::validate::check_id;
use crate::events::{InputEvent, Timestamp};
use crate::telemetry::Metrics;

/// Shared by every handler.
pub struct ApiState {
    pub model: Addr<ReadModel>,
    pub metrics: Arc<Metrics>,
    pub control: Control,
    pub admin_token: Option<Secret>,
    pub read_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub apply_wait: Duration,
    /// A broker that has not reported for this long is unhealthy.
    pub stall_after: Duration,
}

type State = web::Data<ApiState>;

/// The application: every route, the error envelope for unknown routes and methods, and
/// request counting by route pattern (a bounded label set).
pub fn app(
    state: web::Data<ApiState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    App::new()
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            ApiError::invalid("invalid_path", e.to_string(), None).into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::invalid("invalid_query", e.to_string(), None).into()
        }))
        .wrap_fn(move |req, srv| {
            use actix_web::dev::Service;
            let metrics = metrics.clone();
            let method = req.method().clone();
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                let status = res.status();
                let class = match status.as_u16() {
                    200..=299 => "2xx",
                    400..=499 => "4xx",
                    500..=599 => "5xx",
                    _ => "other",
                };
                metrics
                    .api_requests
                    .with_label_values(&[route.as_str(), class])
                    .inc();
                if method != actix_web::http::Method::GET || status.is_server_error() {
                    // Path and status only: headers (the bearer token) are never logged.
                    tracing::info!(%method, route = %route, status = status.as_u16(), "api request");
                }
                Ok(res)
            }
        })
        .service(resource("/", "GET").route(web::get().to(super::status_page::page)))
        .service(resource("/v2/status", "GET").route(web::get().to(status)))
        .service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics_text)))
        .service(
            resource("/v2/byoc/clusters", "GET, POST")
                .route(web::get().to(list_clusters))
                .route(web::post().to(create_cluster)),
        )
        .service(
            resource("/v2/byoc/clusters/{id}", "GET, DELETE")
                .route(web::get().to(get_cluster))
                .route(web::delete().to(delete_cluster)),
        )
        .service(resource("/v2/byoc/clusters/{id}/heartbeat", "POST").route(web::post().to(heartbeat)))
        .service(resource("/v2/lanes", "GET").route(web::get().to(list_lanes)))
        // Lanes are `provider/model[@rev]`: the last segment is the action.
        .service(resource("/v2/lanes/{lane:.+}/activate", "POST").route(web::post().to(activate)))
        .service(resource("/v2/lanes/{lane:.+}/deactivate", "POST").route(web::post().to(deactivate)))
        .service(resource("/v2/lanes/{lane:.+}", "GET").route(web::get().to(get_lane)))
        .service(resource("/v2/tenants/{id}/policy", "PUT").route(web::put().to(put_policy)))
        .service(resource("/v2/decisions/{request_id}", "GET").route(web::get().to(get_decision)))
        .default_service(web::to(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "not_found_error",
                code: "unknown_route",
                message: "no such route".into(),
                param: None,
            }
            .error_response_owned()
        }))
}

/// A resource whose other methods get 405 in the envelope, with the `Allow` header.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        let mut res = ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            kind: "invalid_request_error",
            code: "method_not_allowed",
            message: format!(
                "{} is not allowed on {}; allowed: {allow}",
                req.method(),
                req.path()
            ),
            param: None,
        }
        .error_response_owned();
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        res
    }))
}

impl ApiError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Read,
    Admin,
}

fn authorize(req: &HttpRequest, st: &ApiState, scope: Scope) -> Result<(), ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let admin = token.is_some_and(|t| st.admin_token.as_ref().is_some_and(|a| a.matches(t)));
    match scope {
        Scope::Admin if admin => Ok(()),
        Scope::Admin if st.admin_token.is_none() => Err(ApiError::forbidden(
            "writes_disabled",
            "writes are disabled: no api.admin_token is configured",
        )),
        Scope::Admin
            if token.is_some_and(|t| st.read_token.as_ref().is_some_and(|r| r.matches(t))) =>
        {
            Err(ApiError::forbidden(
                "insufficient_scope",
                "this token has the read-only scope",
            ))
        }
        Scope::Admin => Err(ApiError::unauthorized(
            "a valid admin bearer token is required",
        )),
        Scope::Read => match &st.read_token {
            None => Ok(()),
            Some(_) if admin => Ok(()),
            Some(r) if token.is_some_and(|t| r.matches(t)) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("a valid bearer token is required")),
        },
    }
}

/// Reads the body up to the configured limit (413 beyond it).
async fn body(st: &ApiState, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid("invalid_body", e.to_string(), None))?;
        if out.len() + chunk.len() > st.max_body_bytes {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "invalid_request_error",
                code: "body_too_large",
                message: format!("request body is larger than {} bytes", st.max_body_bytes),
                param: None,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A JSON object body (an empty body counts as `{}` where `empty_ok`).
fn object(bytes: &[u8], empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid(
            "invalid_body",
            "the body must be a JSON object",
            None,
        )),
        Err(e) => Err(ApiError::from_json(&e)),
    }
}

/// Builds an input event from a body and the fields the API sets itself (ids from the path,
/// `ts`), then checks it like the broker checks any input. `T` is the event's struct (unknown
/// fields rejected); `wrap` makes it an [`InputEvent`].
fn event<T: serde::de::DeserializeOwned>(
    mut body: Map<String, Value>,
    set: Vec<(&str, Value)>,
    wrap: fn(T) -> InputEvent,
) -> Result<InputEvent, ApiError> {
    for (field, value) in set {
        if body.contains_key(field) {
            return Err(ApiError::invalid(
                "field_not_allowed",
                format!("field `{field}` is set by the API"),
                Some(field.into()),
            ));
        }
        body.insert(field.into(), value);
    }
    let mut body = Value::Object(body);
    integral_floats(&mut body);
    let inner: T = serde_path_to_error::deserialize(body).map_err(|e| {
        let mut err = ApiError::from_json(e.inner());
        let path = e.path().to_string();
        if err.param.is_none() && path != "." {
            err.param = Some(path);
        }
        err
    })?;
    let e = wrap(inner);
    e.validate().map_err(|invalid| {
        ApiError::invalid(
            "invalid_field",
            invalid.to_string(),
            Some(invalid.field.into()),
        )
    })?;
    Ok(e)
}

/// JSON does not tell `3` from `3.0`, and JSON Schema counts both as integers: integral floats
/// become integers so counts like `"inflight": 3.0` are accepted. Others stay floats (a count
/// of 2.5 is still refused).
fn integral_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 {
                *v = Value::from(f as u64);
            } else if f.fract() == 0.0 && f < 0.0 && f > i64::MIN as f64 {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats),
        Value::Object(m) => m.values_mut().for_each(integral_floats),
        _ => {}
    }
}

fn now() -> Value {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Value::String(Timestamp(ms).to_rfc3339())
}

async fn send(st: &ApiState, e: InputEvent) -> Result<(), ApiError> {
    (st.control)(e).await.map_err(|reason| {
        ApiError::unavailable("kafka_unavailable", format!("event not written: {reason}"))
    })
}

async fn view(st: &ApiState) -> Result<Arc<RouterView>, ApiError> {
    st.model
        .send(GetView)
        .await
        .map_err(|_| ApiError::unavailable("shutting_down", "the broker is stopping"))
}

/// Waits until the broker's view satisfies `done` (at most `apply_wait`).
async fn applied(
    st: &ApiState,
    done: impl Fn(&RouterView) -> bool,
) -> Result<Option<Arc<RouterView>>, ApiError> {
    let until = Instant::now() + st.apply_wait;
    loop {
        let v = view(st).await?;
        if done(&v) {
            return Ok(Some(v));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn path_id(field: &'static str, v: &str) -> Result<(), ApiError> {
    check_id(field, v)
        .map_err(|i| ApiError::invalid("invalid_path", i.to_string(), Some(field.into())))
}

fn accepted(body: Value) -> HttpResponse {
    HttpResponse::Accepted().json(body)
}

async fn healthz(st: State) -> HttpResponse {
    let Ok(h) = st.model.send(GetHealth).await else {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "stopping"}));
    };
    let stalled = h
        .last_report_ms
        .is_none_or(|ms| ms > st.stall_after.as_millis() as u64);
    let status = if !h.ready {
        "starting"
    } else if stalled {
        "stalled"
    } else if h.kafka_reachable == Some(false) {
        "kafka_unreachable"
    } else if h.assigned_partitions == 0 {
        "no_partitions"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "kafka": match h.kafka_reachable {
            Some(true) => "reachable",
            Some(false) => "unreachable",
            None => "unknown",
        },
        "ready": h.ready,
        "assigned_partitions": h.assigned_partitions,
        "lag": h.lag,
        "last_report_ms": h.last_report_ms,
        "batches": h.batches,
        "decisions": h.decisions,
    });
    // No partitions is healthy for a group member with more instances than partitions.
    if status == "ok" || status == "no_partitions" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_text(st: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(st.metrics.render())
}

/// Everything the status page shows, in one call.
async fn status(req: HttpRequest, st: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Read)?;
    let v = view(&st).await?;
    let mix = st.model.send(GetMix(300)).await.unwrap_or_default();
    let health = st.model.send(GetHealth).await.unwrap_or_default();
    let lane_stats = st.model.send(GetLaneStats).await.unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({
        "health": health,
        "lane_stats": lane_stats,
        "lanes": v.lanes,
        "clusters": v.clusters,
        "mix": mix,
    })))
}

async fn list_clusters(req: HttpRequest, st: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Read)?;
    let v = view(&st).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": v.clusters })))
}

async fn get_cluster(
    req: HttpRequest,
    st: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Read)?;
    let v = view(&st).await?;
    match v.cluster(&id) {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::not_found(
            "cluster_not_found",
            format!("no cluster {id}"),
            "id",
        )),
    }
}

async fn create_cluster(
    req: HttpRequest,
    st: State,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Admin)?;
    let body = object(&body(&st, payload).await?, false)?;
    let id = format!("byc_{}", ulid::Ulid::new());
    let e = event(
        body,
        vec![("cluster_id", Value::String(id.clone())), ("ts", now())],
        InputEvent::ClusterRegistered,
    )?;
    let InputEvent::ClusterRegistered(reg) = &e else {
        unreachable!("built from the cluster_registered schema")
    };
    if view(&st).await?.clusters.iter().any(|c| c.name == reg.name) {
        return Err(ApiError::conflict(
            "cluster_name_taken",
            format!("a cluster named {} is registered", reg.name),
            "name",
        ));
    }
    send(&st, e).await?;
    match applied(&st, |v| v.cluster(&id).is_some()).await? {
        Some(v) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/v2/byoc/clusters/{id}")))
            .json(v.cluster(&id))),
        None => Ok(accepted(json!({"cluster_id": id, "status": "accepted"}))),
    }
}

async fn delete_cluster(
    req: HttpRequest,
    st: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Admin)?;
    if view(&st).await?.cluster(&id).is_none() {
        return Err(ApiError::not_found(
            "cluster_not_found",
            format!("no cluster {id}"),
            "id",
        ));
    }
    let e = event(
        Map::new(),
        vec![("cluster_id", Value::String(id.to_string())), ("ts", now())],
        InputEvent::ClusterDeregistered,
    )?;
    send(&st, e).await?;
    let gone = applied(&st, |v| v.cluster(&id).is_none()).await?.is_some();
    let body = json!({"cluster_id": *id, "deleted": gone});
    Ok(if gone {
        HttpResponse::Ok().json(body)
    } else {
        accepted(body)
    })
}

async fn heartbeat(
    req: HttpRequest,
    st: State,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Admin)?;
    let body = object(&body(&st, payload).await?, false)?;
    path_id("id", &id)?;
    let e = event(
        body,
        vec![("cluster_id", Value::String(id.to_string())), ("ts", now())],
        InputEvent::ClusterHeartbeat,
    )?;
    if view(&st).await?.cluster(&id).is_none() {
        return Err(ApiError::not_found(
            "cluster_not_found",
            format!("no cluster {id}"),
            "id",
        ));
    }
    send(&st, e).await?;
    Ok(accepted(json!({"cluster_id": *id, "status": "accepted"})))
}

async fn list_lanes(req: HttpRequest, st: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Read)?;
    let v = view(&st).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": v.lanes })))
}

async fn get_lane(
    req: HttpRequest,
    st: State,
    lane: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Read)?;
    let v = view(&st).await?;
    match v.lane(&lane) {
        Some(l) => Ok(HttpResponse::Ok().json(l)),
        None => Err(ApiError::not_found(
            "lane_not_found",
            format!("no lane {lane}"),
            "lane",
        )),
    }
}

async fn activate(
    req: HttpRequest,
    st: State,
    lane: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Admin)?;
    let body = object(&body(&st, payload).await?, false)?;
    let e = event(
        body,
        vec![("lane", Value::String(lane.to_string())), ("ts", now())],
        InputEvent::LaneActivate,
    )?;
    let InputEvent::LaneActivate(cmd) = &e else {
        unreachable!("built from the lane_activate schema")
    };
    let digest = cmd.report_digest.clone();
    let v = view(&st).await?;
    let Some(l) = v.lane(&lane) else {
        return Err(ApiError::not_found(
            "lane_not_found",
            format!("no lane {lane}"),
            "lane",
        ));
    };
    match l.reports.iter().find(|r| r.digest == digest) {
        None => {
            return Err(ApiError::conflict(
                "report_unknown",
                format!("lane {lane} has no stored gate report {digest}; publish the report (zumik gate --publish) first"),
                "report_digest",
            ))
        }
        Some(r) if !r.passed || !r.digest_ok => {
            return Err(ApiError::conflict(
                "report_not_passing",
                format!("gate report {digest} did not pass (or its digest does not match its content)"),
                "report_digest",
            ))
        }
        Some(_) => {}
    }
    if l.state == "active" && l.report_digest.as_deref() == Some(digest.as_str()) {
        return Ok(HttpResponse::Ok().json(l));
    }
    send(&st, e).await?;
    let active = |v: &RouterView| {
        v.lane(&lane).is_some_and(|l| {
            l.state == "active" && l.report_digest.as_deref() == Some(digest.as_str())
        })
    };
    match applied(&st, active).await? {
        Some(v) => Ok(HttpResponse::Ok().json(v.lane(&lane))),
        None => Ok(accepted(json!({
            "lane": *lane,
            "status": "accepted",
            "message": "the broker has not activated the lane yet; it refuses reports older than routing.gate.max_report_age_ms",
        }))),
    }
}

async fn deactivate(
    req: HttpRequest,
    st: State,
    lane: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Admin)?;
    let mut body = object(&body(&st, payload).await?, true)?;
    body.entry("reason")
        .or_insert_with(|| Value::String("operator".into()));
    let e = event(
        body,
        vec![("lane", Value::String(lane.to_string())), ("ts", now())],
        InputEvent::LaneDeactivated,
    )?;
    if view(&st).await?.lane(&lane).is_none() {
        return Err(ApiError::not_found(
            "lane_not_found",
            format!("no lane {lane}"),
            "lane",
        ));
    }
    send(&st, e).await?;
    match applied(&st, |v| {
        v.lane(&lane).is_some_and(|l| l.state == "inactive")
    })
    .await?
    {
        Some(v) => Ok(HttpResponse::Ok().json(v.lane(&lane))),
        None => Ok(accepted(json!({"lane": *lane, "status": "accepted"}))),
    }
}

async fn put_policy(
    req: HttpRequest,
    st: State,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Admin)?;
    let body = object(&body(&st, payload).await?, false)?;
    path_id("id", &id)?;
    let e = event(
        body,
        vec![("tenant_id", Value::String(id.to_string())), ("ts", now())],
        InputEvent::TenantPolicy,
    )?;
    let echo = serde_json::to_value(&e).unwrap_or_default();
    send(&st, e).await?;
    Ok(accepted(json!({"status": "accepted", "policy": echo})))
}

async fn get_decision(
    req: HttpRequest,
    st: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &st, Scope::Read)?;
    let found = st
        .model
        .send(GetDecision(id.to_string()))
        .await
        .map_err(|_| ApiError::unavailable("shutting_down", "the broker is stopping"))?;
    match found {
        Some(d) => Ok(HttpResponse::Ok().json(json!({
            "decision": &*d,
            "explanation": explain(&d),
        }))),
        None => Err(ApiError::not_found(
            "decision_not_found",
            format!("no recent decision for request {id} on this instance"),
            "request_id",
        )),
    }
}
