//! The HTTP API against a real router, without Kafka: the control writer applies each event to
//! a `Router` and feeds the read model the committed view and decisions, as the broker does
//! after a batch. So every write goes API → event → core → read model → API read.
//! (`tests/kafka.rs` runs the same API inside `zumik serve` on a real broker.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::http::StatusCode;
use actix_web::{test, web};
use serde_json::{json, Value};

use zumik::api::model::{Committed, KafkaReachable, ReadModel, Ready, Viewed};
use zumik::api::{ApiState, Control, Secret};
use zumik::core::view::RouterView;
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::{GateReportV1, InputEvent, Timestamp, Window};
use zumik::kafka::CommittedBatch;
use zumik::telemetry::Metrics;

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "read-token-0123456789";
const LANE: &str = "anthropic/claude-sonnet-4-5";

struct Harness {
    state: web::Data<ApiState>,
    router: Arc<Mutex<Router>>,
    model: Addr<ReadModel>,
    written: Arc<Mutex<Vec<InputEvent>>>,
}

/// Applies `e` as one committed batch and publishes the view.
fn apply(router: &Mutex<Router>, model: &Addr<ReadModel>, e: InputEvent) {
    let mut router = router.lock().unwrap();
    let mut out = Output::default();
    router.apply(e, &mut out);
    model.do_send(Committed(CommittedBatch {
        decisions: std::mem::take(&mut out.decisions),
        inputs: 1,
        ..CommittedBatch::default()
    }));
    model.do_send(Viewed {
        view: RouterView::of(router.state(), router.config()),
        lag: vec![("requests".into(), 0, 0)],
    });
}

fn harness(admin: Option<&str>, read: Option<&str>) -> Harness {
    let cfg = Arc::new(RoutingConfig::default());
    let router = Arc::new(Mutex::new(Router::new(
        cfg,
        Arc::new(PriceTable::embedded()),
    )));
    let metrics = Arc::new(Metrics::new());
    let model = ReadModel::new(metrics.clone(), 1000).start();
    model.do_send(Ready(true));
    let written = Arc::new(Mutex::new(Vec::new()));
    let control: Control = {
        let (router, model, written) = (router.clone(), model.clone(), written.clone());
        Arc::new(move |e: InputEvent| {
            written.lock().unwrap().push(e.clone());
            apply(&router, &model, e);
            Box::pin(async { Ok(()) })
        })
    };
    let state = web::Data::new(ApiState {
        model: model.clone(),
        metrics,
        control,
        admin_token: admin.map(Secret::new),
        read_token: read.map(Secret::new),
        max_body_bytes: 4096,
        apply_wait: Duration::from_millis(500),
        stall_after: Duration::from_secs(60),
    });
    Harness {
        state,
        router,
        model,
        written,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn cluster_body(name: &str) -> Value {
    json!({
        "name": name, "region": "eu-west", "stack": "dynamo", "lanes": [LANE],
        "max_inflight": 10, "gpus": 8, "gpu_hour_micros": 2_000_000
    })
}

macro_rules! call {
    ($app:expr, $method:ident, $path:expr, $token:expr, $body:expr) => {{
        let mut req = test::TestRequest::$method().uri($path);
        if let Some(t) = $token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let body: Option<Value> = $body;
        if let Some(b) = body {
            req = req.set_payload(b.to_string());
        }
        let res = test::call_service(&$app, req.to_request()).await;
        let status = res.status();
        let bytes = test::read_body(res).await;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json, bytes)
    }};
}

fn assert_envelope(body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].as_str().is_some(), "{body}");
    assert!(e.get("param").is_some(), "{body}");
}

#[actix_web::test]
async fn clusters_register_heartbeat_and_leave_through_the_core() {
    let h = harness(Some(ADMIN), None);
    let app = test::init_service(zumik::api::app(h.state.clone())).await;

    let (status, c, _) = call!(
        app,
        post,
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(cluster_body("gpu-a"))
    );
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let id = c["cluster_id"].as_str().unwrap().to_owned();
    // `byc_` + a ULID: 26 Crockford base32 characters.
    assert_eq!(id.len(), 30);
    assert!(
        id[4..]
            .chars()
            .all(|ch| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(ch)),
        "{id}"
    );
    assert_eq!(
        (c["health"].as_str(), c["capacity"].as_u64()),
        (Some("no_heartbeat"), Some(9))
    );

    let (status, list, _) = call!(app, get, "/v2/byoc/clusters", None::<&str>, None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let (status, body, _) = call!(
        app,
        post,
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(cluster_body("gpu-a"))
    );
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&body, "cluster_name_taken");

    let hb = json!({"status": "ready", "max_inflight": 10, "inflight": 2});
    let (status, _, _) = call!(
        app,
        post,
        &format!("/v2/byoc/clusters/{id}/heartbeat"),
        Some(ADMIN),
        Some(hb.clone())
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, c, _) = call!(
        app,
        get,
        &format!("/v2/byoc/clusters/{id}"),
        None::<&str>,
        None
    );
    assert_eq!(c["health"], "healthy", "{c}");
    let (status, body, _) = call!(
        app,
        post,
        "/v2/byoc/clusters/byc_unknown/heartbeat",
        Some(ADMIN),
        Some(hb)
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "cluster_not_found");

    let (status, body, _) = call!(
        app,
        delete,
        &format!("/v2/byoc/clusters/{id}"),
        Some(ADMIN),
        None
    );
    assert_eq!(
        (status, &body["deleted"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, body, _) = call!(
        app,
        get,
        &format!("/v2/byoc/clusters/{id}"),
        None::<&str>,
        None
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "cluster_not_found");
    let (status, _, _) = call!(
        app,
        delete,
        &format!("/v2/byoc/clusters/{id}"),
        Some(ADMIN),
        None
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    // What reached the control topic: exactly the public events, in order.
    let schemas: Vec<_> = h
        .written
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.schema_name())
        .collect();
    assert_eq!(
        schemas,
        [
            "zumik.cluster_registered.v1",
            "zumik.cluster_heartbeat.v1",
            "zumik.cluster_deregistered.v1"
        ]
    );
}

#[actix_web::test]
async fn bad_input_gets_a_4xx_in_the_envelope_and_writes_nothing() {
    let h = harness(Some(ADMIN), None);
    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let post = |body: String| {
        test::TestRequest::post()
            .uri("/v2/byoc/clusters")
            .insert_header(("Authorization", format!("Bearer {ADMIN}")))
            .set_payload(body)
            .to_request()
    };
    let with = |k: &str, v: Value| {
        let mut b = cluster_body("gpu-x");
        b[k] = v;
        b.to_string()
    };
    let cases: Vec<(String, StatusCode, &str, Option<&str>)> = vec![
        (
            "not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
        ),
        (
            "[1,2]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
        ),
        (
            with("colour", json!("red")),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("colour"),
        ),
        (
            with("max_inflight", json!(-5)),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("max_inflight"),
        ),
        (
            with("max_inflight", json!("ten")),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("max_inflight"),
        ),
        (
            with("max_inflight", json!(0)),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("max_inflight"),
        ),
        (
            with("max_inflight", json!(2.5)),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("max_inflight"),
        ),
        (
            with("max_inflight", json!(4_294_967_296u64)),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            Some("max_inflight"),
        ),
        (
            with("lanes", json!(["no-slash"])),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("lanes"),
        ),
        (
            with("region", json!("eu west\u{200b}")),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("region"),
        ),
        (
            with("cluster_id", json!("byc_mine")),
            StatusCode::BAD_REQUEST,
            "field_not_allowed",
            Some("cluster_id"),
        ),
        (
            with("ts", json!("1970-01-01T00:00:00Z")),
            StatusCode::BAD_REQUEST,
            "field_not_allowed",
            Some("ts"),
        ),
        (
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            None,
        ),
        (
            format!("{}1{}", "[".repeat(1_000), "]".repeat(1_000)),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
        ),
    ];
    for (body, want, code, param) in cases {
        let res = test::call_service(&app, post(body.clone())).await;
        assert_eq!(res.status(), want, "{body:.80}");
        let json: Value = test::read_body_json(res).await;
        assert_envelope(&json, code);
        assert_eq!(json["error"]["param"].as_str(), param, "{json}");
    }
    assert!(
        h.written.lock().unwrap().is_empty(),
        "no bad input reached Kafka"
    );

    let (status, body, _) = call!(app, get, "/v2/nowhere", None::<&str>, None);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "unknown_route");
    let res = test::call_service(
        &app,
        test::TestRequest::patch()
            .uri("/v2/byoc/clusters")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").unwrap(), "GET, POST");
    let body: Value = test::read_body_json(res).await;
    assert_envelope(&body, "method_not_allowed");
    // `10.0` is an integer in JSON Schema: accepted like `10`.
    let mut integral = cluster_body("gpu-float");
    integral["max_inflight"] = json!(10.0);
    let (status, c, _) = call!(app, post, "/v2/byoc/clusters", Some(ADMIN), Some(integral));
    assert_eq!(
        (status, &c["max_inflight"]),
        (StatusCode::CREATED, &json!(10)),
        "{c}"
    );
    let (status, body, _) = call!(
        app,
        get,
        "/v2/decisions/%F0%9F%A6%80%E2%80%8B",
        None::<&str>,
        None
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "decision_not_found");
    let policy = json!({"monthly_budget_micros": -1});
    let (status, body, _) = call!(
        app,
        put,
        "/v2/tenants/prj_1/policy",
        Some(ADMIN),
        Some(policy)
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "monthly_budget_micros");
}

#[actix_web::test]
async fn writes_need_the_admin_scope_and_reads_the_read_scope() {
    let h = harness(Some(ADMIN), Some(READER));
    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let body = || Some(cluster_body("gpu-a"));
    let (status, e, _) = call!(app, post, "/v2/byoc/clusters", None::<&str>, body());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(&e, "invalid_token");
    let (status, e, _) = call!(
        app,
        post,
        "/v2/byoc/clusters",
        Some("wrong-token-0123456789"),
        body()
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{e}");
    let (status, e, _) = call!(app, post, "/v2/byoc/clusters", Some(READER), body());
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&e, "insufficient_scope");
    let (status, _, _) = call!(app, get, "/v2/lanes", None::<&str>, None);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call!(app, get, "/v2/lanes", Some(READER), None);
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call!(app, get, "/v2/lanes", Some(ADMIN), None);
    assert_eq!(status, StatusCode::OK);
    // Probes and scrapes stay open.
    for path in ["/healthz", "/metrics"] {
        let (status, _, _) = call!(app, get, path, None::<&str>, None);
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
            "{path}"
        );
    }
    assert!(h.written.lock().unwrap().is_empty());

    // Without an admin token configured, writes are off.
    let h = harness(None, None);
    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let (status, e, _) = call!(app, post, "/v2/byoc/clusters", Some(ADMIN), body());
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&e, "writes_disabled");
}

fn report(lane: &str, passed: bool, window_end_ms: i64) -> GateReportV1 {
    let mut r = GateReportV1 {
        lane: lane.into(),
        passed,
        window: Window {
            start: Timestamp(window_end_ms - 86_400_000),
            end: Timestamp(window_end_ms),
        },
        inputs: json!({ "requests": 10_000 }),
        config: json!({ "gpus": 8 }),
        results: json!({ "break_even_utilisation": 0.4 }),
        series: json!({}),
        digest: String::new(),
    };
    r.seal();
    r
}

fn request(id: &str, at_ms: i64) -> InputEvent {
    serde_json::from_value(json!({
        "schema": "zumik.request.v1", "request_id": id, "tenant_id": "prj_1", "model": LANE,
        "input_tokens": 1000, "cached_input_tokens": 0, "max_output_tokens": 200,
        "qos": {"class": "interactive"}, "ts": Timestamp(at_ms).to_rfc3339(),
    }))
    .unwrap()
}

#[actix_web::test]
async fn lanes_activate_only_with_a_passing_report_and_decisions_explain_themselves() {
    let h = harness(Some(ADMIN), None);
    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let (_, c, _) = call!(
        app,
        post,
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(cluster_body("gpu-a"))
    );
    let id = c["cluster_id"].as_str().unwrap().to_owned();
    let hb = json!({"status": "ready", "max_inflight": 10, "inflight": 0});
    call!(
        app,
        post,
        &format!("/v2/byoc/clusters/{id}/heartbeat"),
        Some(ADMIN),
        Some(hb)
    );

    let t = now_ms();
    let pass = report(LANE, true, t - 3_600_000);
    let fail = report(LANE, false, t - 3_600_000);
    for r in [&pass, &fail] {
        apply(
            &h.router,
            &h.model,
            InputEvent::GateReport(Box::new(r.clone())),
        );
    }
    let activate = |digest: &str| Some(json!({ "report_digest": digest }));
    let path = format!("/v2/lanes/{LANE}/activate");
    let (status, e, _) = call!(
        app,
        post,
        "/v2/lanes/acme/unknown/activate",
        Some(ADMIN),
        activate(&pass.digest)
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&e, "lane_not_found");
    let (status, e, _) = call!(app, post, &path, Some(ADMIN), activate("sha256:nope"));
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&e, "report_unknown");
    let (status, e, _) = call!(app, post, &path, Some(ADMIN), activate(&fail.digest));
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&e, "report_not_passing");
    let (status, lane, _) = call!(app, post, &path, Some(ADMIN), activate(&pass.digest));
    assert_eq!(status, StatusCode::OK, "{lane}");
    assert_eq!(
        (lane["state"].as_str(), lane["report_digest"].as_str()),
        (Some("active"), Some(pass.digest.as_str()))
    );

    // A request on the hot lane: its decision, with the explanation, by request id.
    apply(&h.router, &h.model, request("req-1", t));
    let (status, d, _) = call!(app, get, "/v2/decisions/req-1", None::<&str>, None);
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["decision"]["reason"], "hot_lane");
    assert_eq!(d["decision"]["target"], id.as_str());
    assert_eq!(d["explanation"]["considered"][0]["verdict"], "chosen");
    assert!(
        d["explanation"]["summary"].as_str().unwrap().contains(&id),
        "{d}"
    );

    let (status, lane, _) = call!(
        app,
        post,
        &format!("/v2/lanes/{LANE}/deactivate"),
        Some(ADMIN),
        None
    );
    assert_eq!(
        (status, lane["state"].as_str()),
        (StatusCode::OK, Some("inactive")),
        "{lane}"
    );
    apply(&h.router, &h.model, request("req-2", t + 1));
    let (_, d, _) = call!(app, get, "/v2/decisions/req-2", None::<&str>, None);
    assert_eq!(d["decision"]["reason"], "not_activated", "{d}");

    // The status page's data and the metrics saw the same.
    let (status, s, _) = call!(app, get, "/v2/status", None::<&str>, None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["lane_stats"][LANE]["decisions"], 2, "{s}");
    assert_eq!(s["clusters"][0]["cluster_id"], id.as_str());
    let (_, _, metrics) = call!(app, get, "/metrics", None::<&str>, None);
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.contains(
            r#"zumik_decisions_total{mode="live",profile="byoc_dynamo",reason="hot_lane"} 1"#
        ),
        "{metrics}"
    );
    let (status, _, page) = call!(app, get, "/", None::<&str>, None);
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page).contains("/v2/status"));

    let (status, ack, _) = call!(
        app,
        put,
        "/v2/tenants/prj_1/policy",
        Some(ADMIN),
        Some(json!({"allowed_regions": ["eu-west"]}))
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    assert_eq!(ack["policy"]["tenant_id"], "prj_1");
}

#[actix_web::test]
async fn healthz_says_starting_until_the_broker_is_ready() {
    let h = harness(Some(ADMIN), None);
    h.model.do_send(Ready(false));
    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let (status, body, _) = call!(app, get, "/healthz", None::<&str>, None);
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("starting"))
    );
    h.model.do_send(Ready(true));
    apply(&h.router, &h.model, request("r", now_ms()));
    let (status, body, _) = call!(app, get, "/healthz", None::<&str>, None);
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok")),
        "{body}"
    );
    assert_eq!(body["assigned_partitions"], 1);
    // The broker's metadata probe failed: Kafka is down, the instance is not healthy.
    h.model.do_send(KafkaReachable(false));
    let (status, body, _) = call!(app, get, "/healthz", None::<&str>, None);
    assert_eq!(
        (status, body["status"].as_str(), body["kafka"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("kafka_unreachable"),
            Some("unreachable")
        )
    );
    h.model.do_send(KafkaReachable(true));
    let (status, body, _) = call!(app, get, "/healthz", None::<&str>, None);
    assert_eq!(
        (status, body["kafka"].as_str()),
        (StatusCode::OK, Some("reachable"))
    );
}

/// The status page in headless Chromium against a live server: it loads, shows the registered
/// cluster, and shows new decisions on the next load. (The page polls `/v2/status` every second;
/// `--dump-dom` gives the DOM after 3 s of virtual time, so it has run its fetches.)
#[actix_web::test]
async fn the_status_page_shows_clusters_and_decisions_in_headless_chromium() {
    let h = harness(Some(ADMIN), None);
    let state = h.state.clone();
    let server = actix_web::HttpServer::new(move || zumik::api::app(state.clone()))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
    let url = format!("http://{}/", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let (_, c, _) = call!(
        app,
        post,
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(cluster_body("gpu-status"))
    );
    let id = c["cluster_id"].as_str().unwrap().to_owned();
    let hb = json!({"status": "ready", "max_inflight": 10, "inflight": 0});
    call!(
        app,
        post,
        &format!("/v2/byoc/clusters/{id}/heartbeat"),
        Some(ADMIN),
        Some(hb)
    );
    let t = now_ms();
    for i in 0..3 {
        apply(&h.router, &h.model, request(&format!("page-{i}"), t + i));
    }

    let dir = std::env::temp_dir().join(format!("zumik-status-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dump = |profile: &str| {
        let (dir, url) = (dir.clone(), url.clone());
        let profile = profile.to_owned();
        actix_web::rt::task::spawn_blocking(move || {
            common::run_chromium(
                &dir.join(profile),
                &["--dump-dom", "--virtual-time-budget=3000"],
                &url,
            )
        })
    };
    let dom = dump("first").await.unwrap();
    assert!(
        dom.contains(&id),
        "the registered cluster is on the page:\n{dom:.2000}"
    );
    assert!(
        dom.contains("gpu-status") && dom.contains("healthy"),
        "{dom:.2000}"
    );
    assert!(dom.contains("decisions: 3"), "{dom:.3000}");
    assert!(dom.contains("<rect"), "the decision mix chart has bars");

    for i in 3..8 {
        apply(&h.router, &h.model, request(&format!("page-{i}"), t + i));
    }
    let dom = dump("second").await.unwrap();
    assert!(
        dom.contains("decisions: 8"),
        "new decisions show: {dom:.3000}"
    );

    let shot = dir.join("status.png");
    let (d, u, s) = (dir.clone(), url.clone(), shot.clone());
    actix_web::rt::task::spawn_blocking(move || {
        common::run_chromium(
            &d.join("shot"),
            &[
                &format!("--screenshot={}", s.display()),
                "--window-size=1200,1000",
                "--virtual-time-budget=3000",
            ],
            &u,
        )
    })
    .await
    .unwrap();
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
    if let Some(keep) = std::env::var_os("ZUMIK_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    handle.stop(true).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `docs/openapi.json` against the server: every operation is exercised (success and error
/// paths), every status answered is documented for it, and every JSON body validates against
/// the documented schema. Request bodies in the spec are the event schemas minus the fields the
/// API sets (`scripts/gen-openapi`), checked here too.
#[actix_web::test]
async fn every_answer_matches_the_openapi_spec() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/openapi.json")).unwrap())
            .unwrap();
    let components = spec["components"].clone();
    // Bodies = event schemas minus API-set fields.
    for (body, event, dropped) in [
        (
            "ClusterCreate",
            "cluster_registered",
            &["schema", "cluster_id", "ts"][..],
        ),
        (
            "Heartbeat",
            "cluster_heartbeat",
            &["schema", "cluster_id", "ts"],
        ),
        (
            "TenantPolicy",
            "tenant_policy",
            &["schema", "tenant_id", "ts"],
        ),
        ("Activate", "lane_activate", &["schema", "lane", "ts"]),
    ] {
        let ev: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("schemas/zumik.{event}.v1.json"))).unwrap(),
        )
        .unwrap();
        let mut want: Vec<&str> = ev["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        want.retain(|k| !dropped.contains(k));
        let got: Vec<&str> = components["schemas"][body]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            got, want,
            "{body} drifted from {event}: run scripts/gen-openapi"
        );
    }

    let h = harness(Some(ADMIN), None);
    let app = test::init_service(zumik::api::app(h.state.clone())).await;
    let mut seen: Vec<(&str, String, StatusCode, Value, Vec<u8>)> = Vec::new();
    macro_rules! go {
        ($method:ident, $template:expr, $path:expr, $token:expr, $body:expr) => {{
            let (status, json, bytes) = call!(app, $method, $path, $token, $body);
            seen.push((
                stringify!($method),
                $template.to_owned(),
                status,
                json.clone(),
                bytes.to_vec(),
            ));
            (status, json)
        }};
    }
    let (_, c) = go!(
        post,
        "/v2/byoc/clusters",
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(cluster_body("gpu-a"))
    );
    let id = c["cluster_id"].as_str().unwrap().to_owned();
    go!(
        post,
        "/v2/byoc/clusters",
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(cluster_body("gpu-a"))
    );
    go!(
        post,
        "/v2/byoc/clusters",
        "/v2/byoc/clusters",
        Some(ADMIN),
        Some(json!({"name": 1}))
    );
    go!(
        post,
        "/v2/byoc/clusters",
        "/v2/byoc/clusters",
        None::<&str>,
        Some(cluster_body("gpu-b"))
    );
    go!(
        get,
        "/v2/byoc/clusters",
        "/v2/byoc/clusters",
        None::<&str>,
        None
    );
    let one = "/v2/byoc/clusters/{id}";
    go!(
        get,
        one,
        &format!("/v2/byoc/clusters/{id}"),
        None::<&str>,
        None
    );
    go!(get, one, "/v2/byoc/clusters/byc_nope", None::<&str>, None);
    let hb = "/v2/byoc/clusters/{id}/heartbeat";
    let beat = json!({"status": "ready", "max_inflight": 10, "inflight": 1});
    go!(
        post,
        hb,
        &format!("/v2/byoc/clusters/{id}/heartbeat"),
        Some(ADMIN),
        Some(beat.clone())
    );
    go!(
        post,
        hb,
        "/v2/byoc/clusters/byc_nope/heartbeat",
        Some(ADMIN),
        Some(beat)
    );
    go!(
        post,
        hb,
        &format!("/v2/byoc/clusters/{id}/heartbeat"),
        Some(ADMIN),
        Some(json!({"status": "sleepy"}))
    );
    go!(get, "/v2/lanes", "/v2/lanes", None::<&str>, None);
    go!(
        get,
        "/v2/lanes/{lane}",
        &format!("/v2/lanes/{LANE}"),
        None::<&str>,
        None
    );
    go!(
        get,
        "/v2/lanes/{lane}",
        "/v2/lanes/no/such",
        None::<&str>,
        None
    );
    let pass = report(LANE, true, now_ms() - 3_600_000);
    apply(
        &h.router,
        &h.model,
        InputEvent::GateReport(Box::new(pass.clone())),
    );
    let act = "/v2/lanes/{lane}/activate";
    go!(
        post,
        act,
        &format!("/v2/lanes/{LANE}/activate"),
        Some(ADMIN),
        Some(json!({"report_digest": "sha256:x"}))
    );
    go!(
        post,
        act,
        &format!("/v2/lanes/{LANE}/activate"),
        Some(ADMIN),
        Some(json!({"report_digest": pass.digest}))
    );
    apply(&h.router, &h.model, request("spec-1", now_ms()));
    let dec = "/v2/decisions/{request_id}";
    go!(get, dec, "/v2/decisions/spec-1", None::<&str>, None);
    go!(get, dec, "/v2/decisions/none", None::<&str>, None);
    let deact = "/v2/lanes/{lane}/deactivate";
    go!(
        post,
        deact,
        &format!("/v2/lanes/{LANE}/deactivate"),
        Some(ADMIN),
        Some(json!({"reason": "maintenance"}))
    );
    go!(
        post,
        deact,
        "/v2/lanes/no/such/deactivate",
        Some(ADMIN),
        None
    );
    let pol = "/v2/tenants/{id}/policy";
    go!(
        put,
        pol,
        "/v2/tenants/prj_1/policy",
        Some(ADMIN),
        Some(json!({"overage_mode": "pause", "monthly_budget_micros": 5}))
    );
    go!(
        put,
        pol,
        "/v2/tenants/prj_1/policy",
        Some(ADMIN),
        Some(json!({"overage_mode": "sometimes"}))
    );
    go!(get, "/v2/status", "/v2/status", None::<&str>, None);
    go!(get, "/healthz", "/healthz", None::<&str>, None);
    go!(get, "/metrics", "/metrics", None::<&str>, None);
    go!(get, "/", "/", None::<&str>, None);
    go!(
        delete,
        one,
        &format!("/v2/byoc/clusters/{id}"),
        Some(ADMIN),
        None
    );
    go!(
        delete,
        one,
        &format!("/v2/byoc/clusters/{id}"),
        Some(ADMIN),
        None
    );

    let mut ok_ops = std::collections::BTreeSet::new();
    for (method, template, status, json, bytes) in &seen {
        let op = &spec["paths"][template][*method];
        assert!(op.is_object(), "{method} {template} is not in the spec");
        let documented = &op["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which the spec does not document"
        );
        if status.is_success() {
            ok_ops.insert(format!("{method} {template}"));
        }
        if let Some(schema) = documented["content"]["application/json"]["schema"].as_object() {
            let mut schema = Value::Object(schema.clone());
            schema["components"] = components.clone();
            let validator = jsonschema::validator_for(&schema).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(json)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {template} {status}: {errors:?}\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let all_ops: std::collections::BTreeSet<String> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| *m != "parameters")
                .map(move |m| format!("{m} {path}"))
        })
        .collect();
    assert_eq!(
        ok_ops, all_ops,
        "every operation answered with success at least once"
    );
}
