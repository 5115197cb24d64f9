//! Tests of the simulated cluster and gateway over real HTTP on 127.0.0.1:0, and of the
//! truth ([`Chain::expected`]) against what the gateway serves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cid::Cid;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::content::{self, BOM, HUGE_BYTES, METADATA_ADDRESS_URL};
use super::*;

/// A CID the generator never makes.
const OTHER_CID: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
/// Another, CIDv0.
const OTHER_CID_V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

/// A server task on 127.0.0.1:0 and its stop switch.
struct Served {
    /// `http://127.0.0.1:P`.
    base: String,
    /// Stops the server when sent or dropped.
    stop: Option<oneshot::Sender<()>>,
    /// The server task.
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    async fn stop(mut self) {
        drop(self.stop.take());
        self.task.await.unwrap().unwrap();
    }
}

/// A cluster on its own listener.
async fn start_cluster(config: ClusterConfig) -> (Served, Arc<Cluster>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cluster = Arc::new(Cluster::new(config));
    let (stop, stopped) = oneshot::channel::<()>();
    let served = Arc::clone(&cluster);
    let task = tokio::spawn(async move {
        serve_cluster(listener, served, async move {
            let _ = stopped.await;
        })
        .await
        .map_err(anyhow::Error::from)
    });
    (
        Served {
            base,
            stop: Some(stop),
            task,
        },
        cluster,
    )
}

/// A gateway over a chain of `tokens` whose web URIs name it.
async fn start_gateway(tokens: usize, seed: u64, config: GatewayConfig) -> (Served, Arc<Chain>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let chain = generate(&ChainParams {
        tokens,
        seed,
        head_tail: 30,
        web_base: Some(web_base(addr)),
    });
    let live = Arc::new(LiveChain::new(chain));
    let chain = live.chain();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_gateway(listener, live, config, async move {
            let _ = stopped.await;
        })
        .await
        .map_err(anyhow::Error::from)
    });
    let served = Served {
        base: format!("http://{addr}"),
        stop: Some(stop),
        task,
    };
    // The gateway builds its index before it accepts.
    let http = client();
    for _ in 0..200 {
        if http
            .get(format!("{}/ipfs/{OTHER_CID}", served.base))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (served, chain)
}

/// A whole devnet in-process.
struct Full {
    /// `http://127.0.0.1:P/admin`.
    admin: String,
    /// The cluster's base URL.
    cluster: String,
    /// The gateway's base URL.
    gateway: String,
    /// The chain as generated.
    params: ChainParams,
    /// The server.
    served: Served,
}

async fn start_full(mut config: DevnetConfig) -> Full {
    let lo = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(lo, lo, lo).await.unwrap();
    let addrs = listeners.addrs().unwrap();
    config.chain.web_base = Some(web_base(addrs.gateway));
    let params = config.chain.clone();
    let live = Arc::new(LiveChain::new(generate(&params)));
    live.ensure_index();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_all(listeners, live, config, async move {
        let _ = stopped.await;
    }));
    Full {
        admin: format!("http://{}{ADMIN_PATH}", addrs.main),
        cluster: format!("http://{}", addrs.cluster),
        gateway: format!("http://{}", addrs.gateway),
        params,
        served: Served {
            base: format!("http://{}", addrs.main),
            stop: Some(stop),
            task,
        },
    }
}

/// A client that never follows redirects or keeps idle connections.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Some distinct valid CIDs.
fn cids(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| chain::cid_v1(0xc1d0 + i, i % 2 == 0))
        .collect()
}

/// A fast cluster config.
fn fast(queue_ms: u64, pin_ms: u64, error_rate: f64) -> ClusterConfig {
    ClusterConfig {
        queue: Duration::from_millis(queue_ms),
        pin: Duration::from_millis(pin_ms),
        error_rate,
        ..ClusterConfig::default()
    }
}

async fn post_pin(http: &reqwest::Client, base: &str, cid: &str, query: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/pins/{cid}?{query}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `GET /pins?cids=...`: status, the X-Stream-Error trailer (when not empty), parsed lines.
async fn statuses(
    http: &reqwest::Client,
    base: &str,
    query: &str,
) -> (u16, Option<String>, Vec<Value>) {
    let r = http
        .get(format!("{base}/pins{query}"))
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    // The error arrives as a trailer after the body, as from a real cluster.
    let mut frames = reqwest::Body::from(r);
    let mut data = Vec::new();
    let mut stream_error = None;
    while let Some(frame) =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut frames), cx))
            .await
    {
        match frame.unwrap().into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => {
                let trailers = frame.into_trailers().unwrap();
                stream_error = trailers
                    .get("x-stream-error")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .filter(|v| !v.is_empty());
            }
        }
    }
    let body = String::from_utf8(data).unwrap();
    let lines = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (status, stream_error, lines)
}

/// The statuses of a GlobalPinInfo's peers.
fn peer_statuses(info: &Value) -> Vec<String> {
    info["peer_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_global_pin_info_shape(info: &Value, peers: usize) {
    for key in [
        "cid",
        "name",
        "allocations",
        "origins",
        "created",
        "metadata",
        "peer_map",
    ] {
        assert!(info.get(key).is_some(), "{key} missing in {info}");
    }
    let map = info["peer_map"].as_object().unwrap();
    assert_eq!(map.len(), peers);
    for (id, p) in map {
        assert!(id.starts_with("12D3KooW"), "{id}");
        for key in [
            "peername",
            "ipfs_peer_id",
            "ipfs_peer_addresses",
            "status",
            "timestamp",
            "error",
            "attempt_count",
            "priority_pin",
        ] {
            assert!(p.get(key).is_some(), "{key} missing in {p}");
        }
        let ts = p["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    }
}

#[tokio::test]
async fn a_pin_moves_from_queued_through_pinning_to_pinned() {
    let (served, cluster) = start_cluster(fast(200, 400, 0.0)).await;
    let http = client();
    let cid = &cids(1)[0];
    let (status, pin) = post_pin(
        &http,
        &served.base,
        cid,
        "name=Token%20%231&meta-role=metadata&meta-token=0xab_1&replication-min=-1&replication-max=-1",
    )
    .await;
    assert_eq!(status, 200, "{pin}");
    assert_eq!(pin["cid"], cid.as_str());
    assert_eq!(pin["name"], "Token #1");
    assert_eq!(
        pin["metadata"],
        json!({"role": "metadata", "token": "0xab_1"})
    );
    assert_eq!(pin["mode"], "recursive");
    assert_eq!(pin["type"], "pin");
    assert_eq!(pin["max_depth"], -1);
    assert_eq!(pin["replication_factor_min"], -1);
    assert_eq!(pin["replication_factor_max"], -1);
    assert_eq!(pin["allocations"].as_array().unwrap().len(), 3);
    assert_eq!(pin["origins"], json!([]));
    assert!(humantime::parse_rfc3339(pin["timestamp"].as_str().unwrap()).is_ok());
    let started = Instant::now();

    let get = |http: reqwest::Client| {
        let url = format!("{}/pins/{cid}", served.base);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let info = get(http.clone()).await;
    assert_global_pin_info_shape(&info, 3);
    assert_eq!(info["name"], "Token #1");
    assert_eq!(info["metadata"]["role"], "metadata");
    if started.elapsed() < Duration::from_millis(150) {
        assert!(peer_statuses(&info).iter().all(|s| s == "pin_queued"));
    }
    tokio::time::sleep(Duration::from_millis(250).saturating_sub(started.elapsed())).await;
    let info = get(http.clone()).await;
    if started.elapsed() < Duration::from_millis(390) {
        assert!(
            peer_statuses(&info).iter().all(|s| s == "pinning"),
            "{info}"
        );
    }
    tokio::time::sleep(Duration::from_millis(850).saturating_sub(started.elapsed())).await;
    let info = get(http.clone()).await;
    assert!(peer_statuses(&info).iter().all(|s| s == "pinned"), "{info}");
    assert!(
        info["peer_map"]
            .as_object()
            .unwrap()
            .values()
            .all(|p| p["error"] == "" && p["attempt_count"] == 1)
    );
    assert_eq!(cluster.stats().by_status.get("pinned"), Some(&1));
    served.stop().await;
}

#[tokio::test]
async fn peers_finish_at_different_times_so_the_fold_matters() {
    let (served, _cluster) = start_cluster(fast(20, 300, 0.0)).await;
    let http = client();
    let list = cids(6);
    for cid in &list {
        assert_eq!(post_pin(&http, &served.base, cid, "").await.0, 200);
    }
    let query = format!("?cids={}", list.join(","));
    let mut mixed = false;
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline && !mixed {
        let (status, _, lines) = statuses(&http, &served.base, &query).await;
        assert_eq!(status, 200);
        mixed = lines.iter().any(|l| {
            let s = peer_statuses(l);
            s.contains(&"pinned".to_owned()) && s.contains(&"pinning".to_owned())
        });
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(
        mixed,
        "no CID was pinned on one peer and pinning on another"
    );
    served.stop().await;
}

#[tokio::test]
async fn status_streams_are_ndjson_in_request_order_with_unknown_cids_unpinned() {
    let (served, _cluster) = start_cluster(fast(10, 10, 0.0)).await;
    let http = client();
    // Nothing tracked: 204 with no body.
    let r = http
        .get(format!("{}/pins", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());

    let list = cids(3);
    for cid in &list {
        post_pin(&http, &served.base, cid, "name=x").await;
    }
    let query = format!("?cids={},{OTHER_CID_V0},{}", list[2], list[0]);
    let (status, error, lines) = statuses(&http, &served.base, &query).await;
    assert_eq!((status, error), (200, None));
    let order: Vec<&str> = lines.iter().map(|l| l["cid"].as_str().unwrap()).collect();
    assert_eq!(order, [list[2].as_str(), OTHER_CID_V0, list[0].as_str()]);
    for line in &lines {
        assert_global_pin_info_shape(line, 3);
    }
    let unknown = &lines[1];
    assert!(peer_statuses(unknown).iter().all(|s| s == "unpinned"));
    assert_eq!(unknown["name"], "");
    assert_eq!(unknown["allocations"], Value::Null);
    assert_eq!(unknown["created"], "0001-01-01T00:00:00Z");

    // Every pin, and filters.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (status, _, all) = statuses(&http, &served.base, "").await;
    assert_eq!(status, 200);
    let got: BTreeSet<&str> = all.iter().map(|l| l["cid"].as_str().unwrap()).collect();
    assert_eq!(got, list.iter().map(String::as_str).collect());
    let (status, _, pinned) = statuses(&http, &served.base, "?filter=pinned").await;
    assert_eq!((status, pinned.len()), (200, 3));
    let r = http
        .get(format!("{}/pins?filter=pin_error,queued", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Errors have ipfs-cluster's body.
    for (method, path, code) in [
        ("GET", "/pins/notacid".to_owned(), 400),
        ("POST", "/pins/notacid".to_owned(), 400),
        ("GET", "/pins?cids=bafy,notacid".to_owned(), 400),
        ("GET", "/pins?filter=sleeping".to_owned(), 400),
        ("GET", format!("/pins/{OTHER_CID}"), 404),
        ("POST", format!("/pins/{OTHER_CID}/recover"), 404),
        ("POST", format!("/pins/{OTHER_CID}?replication-min=x"), 400),
        ("POST", format!("/pins/{OTHER_CID}?replication-min=4"), 500),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    served.stop().await;
}

#[tokio::test]
async fn replication_factors_choose_allocations_and_others_are_remote() {
    let (served, _cluster) = start_cluster(fast(10, 10, 0.0)).await;
    let http = client();
    let cid = &cids(1)[0];
    let (_, pin) = post_pin(
        &http,
        &served.base,
        cid,
        "replication-min=1&replication-max=2",
    )
    .await;
    assert_eq!(pin["allocations"].as_array().unwrap().len(), 2);
    assert_eq!(
        (
            pin["replication_factor_min"].clone(),
            pin["replication_factor_max"].clone()
        ),
        (json!(1), json!(2))
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let info: Value = http
        .get(format!("{}/pins/{cid}", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut s = peer_statuses(&info);
    s.sort();
    assert_eq!(s, ["pinned", "pinned", "remote"]);
    served.stop().await;
}

#[tokio::test]
async fn a_failed_pin_stays_in_pin_error_until_recovered() {
    let (served, cluster) = start_cluster(fast(10, 30, 1.0)).await;
    let http = client();
    let cid = &cids(1)[0];
    assert!(cluster.fails_first_attempt(cid));
    post_pin(&http, &served.base, cid, "").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, _, lines) = statuses(&http, &served.base, &format!("?cids={cid}")).await;
    assert!(peer_statuses(&lines[0]).iter().all(|s| s == "pin_error"));
    let errors: BTreeSet<&str> = lines[0]["peer_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(!errors.iter().next().unwrap().is_empty());
    // A re-pin changes nothing (as in ipfs-cluster); it is counted.
    post_pin(&http, &served.base, cid, "").await;
    let (_, _, lines) = statuses(&http, &served.base, &format!("?cids={cid}")).await;
    assert!(peer_statuses(&lines[0]).iter().all(|s| s == "pin_error"));

    let r = http
        .post(format!("{}/pins/{cid}/recover", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap();
    assert_global_pin_info_shape(&info, 3);
    assert!(peer_statuses(&info).iter().all(|s| s == "pin_queued"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, _, lines) = statuses(&http, &served.base, &format!("?cids={cid}")).await;
    assert!(peer_statuses(&lines[0]).iter().all(|s| s == "pinned"));
    assert!(
        lines[0]["peer_map"]
            .as_object()
            .unwrap()
            .values()
            .all(|p| p["attempt_count"] == 2)
    );
    // Recovering a pinned CID does nothing.
    let r = http
        .post(format!("{}/pins/{cid}/recover", served.base))
        .send()
        .await
        .unwrap();
    assert!(
        peer_statuses(&r.json::<Value>().await.unwrap())
            .iter()
            .all(|s| s == "pinned")
    );

    let stats = cluster.stats();
    assert_eq!(stats.pins, 1);
    assert_eq!(stats.pin_requests, 2);
    assert_eq!(stats.recovers, 1);
    assert_eq!(stats.repinned, vec![cid.clone()]);
    served.stop().await;
}

#[tokio::test]
async fn recover_all_restarts_every_failed_pin() {
    let (served, cluster) = start_cluster(fast(5, 10, 0.5)).await;
    let http = client();
    let list = cids(40);
    for cid in &list {
        post_pin(&http, &served.base, cid, "").await;
    }
    let failing = list
        .iter()
        .filter(|c| cluster.fails_first_attempt(c))
        .count();
    assert!((5..35).contains(&failing), "{failing} of 40 fail");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(cluster.stats().by_status.get("pin_error"), Some(&failing));
    let (status, _, lines) = {
        let r = http
            .post(format!("{}/pins/recover", served.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (status, (), lines)
    };
    assert_eq!(status, 200);
    assert_eq!(lines.len(), failing);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let stats = cluster.stats();
    assert_eq!(stats.by_status.get("pinned"), Some(&40));
    assert_eq!(stats.recovers, failing as u64);
    served.stop().await;
}

#[tokio::test]
async fn the_same_cid_in_another_encoding_is_the_same_pin() {
    let (served, cluster) = start_cluster(fast(5, 5, 0.0)).await;
    let http = client();
    let cid = Cid::try_from(cids(1)[0].as_str()).unwrap();
    let b58 = cid
        .to_string_of_base(cid::multibase::Base::Base58Btc)
        .unwrap();
    post_pin(&http, &served.base, &cid.to_string(), "").await;
    let (status, pin) = post_pin(&http, &served.base, &b58, "").await;
    assert_eq!(status, 200);
    assert_eq!(pin["cid"], cid.to_string());
    let stats = cluster.stats();
    assert_eq!((stats.pins, stats.pin_requests), (1, 2));
    served.stop().await;
}

#[tokio::test]
async fn posts_after_a_pinned_answer_are_counted_and_named() {
    let (served, cluster) = start_cluster(fast(5, 5, 0.0)).await;
    let http = client();
    let list = cids(3);
    let (a, b, c) = (&list[0], &list[1], &list[2]);
    for cid in &list {
        assert_eq!(post_pin(&http, &served.base, cid, "").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Re-posts before any answer said `pinned` are not counted (a crash may cause them).
    post_pin(&http, &served.base, a, "").await;
    // `a` is seen pinned through a stream, `b` through the single read; `c` never is, and
    // a stream whose filter hides `b` does not count as an answer about it.
    let (status, _, lines) = statuses(&http, &served.base, &format!("?cids={a}")).await;
    assert_eq!((status, lines.len()), (200, 1));
    let (status, _, lines) =
        statuses(&http, &served.base, &format!("?cids={b}&filter=pin_error")).await;
    assert_eq!((status, lines.len()), (204, 0));
    let stats = cluster.stats();
    assert_eq!(
        (
            stats.posts_after_pinned_seen,
            stats.posted_after_pinned.len()
        ),
        (0, 0)
    );
    post_pin(&http, &served.base, b, "").await;
    let r = http
        .get(format!("{}/pins/{b}", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    post_pin(&http, &served.base, a, "").await;
    post_pin(&http, &served.base, a, "").await;
    post_pin(&http, &served.base, b, "").await;
    post_pin(&http, &served.base, c, "").await;
    let stats = cluster.stats();
    assert_eq!(stats.posts_after_pinned_seen, 3, "{stats:?}");
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(stats.posted_after_pinned, want);
    assert_eq!(stats.pin_requests, 3 + 1 + 1 + 4);
    served.stop().await;
}

#[tokio::test]
async fn credentials_are_required_when_configured() {
    let config = ClusterConfig {
        basic_auth: Some(Credential::new("nifty:s3cret")),
        bearer: Some(Credential::new("tok-123")),
        ..fast(5, 5, 0.0)
    };
    assert!(!format!("{config:?}").contains("s3cret"));
    let (served, cluster) = start_cluster(config).await;
    let http = client();
    let url = format!("{}/pins/{}", served.base, cids(1)[0]);
    let basic = |pair: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    for (auth, want) in [
        (None, 401),
        (Some("Bearer wrong".to_owned()), 401),
        (Some(basic("nifty:wrong")), 401),
        (Some("Bearer tok-123".to_owned()), 200),
        (Some(basic("nifty:s3cret")), 200),
    ] {
        let mut req = http.post(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{auth:?}");
        if want == 401 {
            assert!(r.headers().contains_key("www-authenticate"));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body, json!({"code": 401, "message": "Unauthorized"}));
        }
    }
    let stats = cluster.stats();
    assert_eq!((stats.unauthorized, stats.pin_requests), (3, 2));
    served.stop().await;
}

#[tokio::test]
async fn faults_answer_5xx_with_the_error_body_and_leave_the_state_alone() {
    let config = ClusterConfig {
        fault_rate: 0.3,
        seed: 5,
        ..fast(5, 5, 0.0)
    };
    let (served, cluster) = start_cluster(config).await;
    let http = client();
    let list = cids(300);
    let mut accepted = BTreeSet::new();
    let mut faults = 0;
    for cid in &list {
        let (status, body) = post_pin(&http, &served.base, cid, "").await;
        match status {
            200 => {
                accepted.insert(cid.clone());
            }
            500 | 502 | 503 => {
                faults += 1;
                assert_eq!(body["code"], status, "{body}");
            }
            other => panic!("{other}"),
        }
    }
    assert!((50..=130).contains(&faults), "{faults} faults of 300");
    let stats = cluster.stats();
    assert_eq!(stats.pins, accepted.len());
    assert_eq!(stats.faults, faults);
    served.stop().await;
}

#[tokio::test]
async fn a_cut_stream_says_so_in_x_stream_error() {
    let config = ClusterConfig {
        stream_error_rate: 1.0,
        ..fast(5, 5, 0.0)
    };
    let (served, _cluster) = start_cluster(config).await;
    let http = client();
    let list = cids(4);
    let (status, error, lines) =
        statuses(&http, &served.base, &format!("?cids={}", list.join(","))).await;
    assert_eq!(status, 200);
    assert!(error.is_some_and(|e| !e.is_empty()));
    assert_eq!(lines.len(), 2);
    let r = http
        .get(format!("{}/pins?cids={}", served.base, list[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    served.stop().await;
}

#[tokio::test]
async fn latency_delays_cluster_answers() {
    let config = ClusterConfig {
        latency: Duration::from_millis(120),
        ..fast(5, 5, 0.0)
    };
    let (served, _cluster) = start_cluster(config).await;
    let started = Instant::now();
    let r = client()
        .get(format!("{}/version", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(120));
    served.stop().await;
}

#[tokio::test]
async fn outages_fail_requests_for_a_while_and_keep_the_pins() {
    let mut config = DevnetConfig::default();
    config.chain.tokens = 300;
    config.cluster = fast(5, 5, 0.0);
    let full = start_full(config).await;
    let http = client();
    let list = cids(5);
    for cid in &list {
        assert_eq!(post_pin(&http, &full.cluster, cid, "").await.0, 200);
    }
    let outage = |mode: &str, seconds: f64| {
        let http = http.clone();
        let url = format!("{}/cluster/outage", full.admin);
        let body = json!({ "mode": mode, "seconds": seconds });
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let version = format!("{}/version", full.cluster);

    outage("unavailable", 0.4).await;
    let r = http.get(&version).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 503);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(http.get(&version).send().await.unwrap().status(), 200);

    outage("refuse", 0.5).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = http.get(&version).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let mut back = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if http.get(&version).send().await.is_ok() {
            back = true;
            break;
        }
    }
    assert!(back, "the cluster did not come back on its port");
    let (status, _, lines) =
        statuses(&http, &full.cluster, &format!("?cids={}", list.join(","))).await;
    assert_eq!(status, 200);
    assert!(
        lines
            .iter()
            .all(|l| peer_statuses(l).iter().all(|s| s == "pinned"))
    );

    let stats: Value = http
        .get(format!("{}/cluster/stats", full.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["pins"], 5);
    assert_eq!(stats["pin_requests"], 5);
    assert_eq!(stats["recovers"], 0);
    assert_eq!(stats["repinned"], json!([]));
    assert_eq!(stats["by_status"], json!({"pinned": 5}));
    assert_eq!(stats["unavailable"], 1);

    let bad = http
        .post(format!("{}/cluster/outage", full.admin))
        .json(&json!({"mode": "nap", "seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    full.served.stop().await;
}

#[tokio::test]
async fn a_subgraph_only_devnet_has_no_cluster_admin() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let chain = generate(&ChainParams {
        tokens: 10,
        ..ChainParams::default()
    });
    let task = tokio::spawn(serve_chain(
        listener,
        chain,
        DevnetConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let r = client()
        .get(format!("http://{addr}/admin/cluster/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(stop);
    task.await.unwrap().unwrap();
}

/// How the test's reference fetcher sees a token: the URI read as a pinner would (not from
/// the generator's intent), the metadata fetched with a 1 MiB cap, a short timeout and at
/// most 3 redirects, and refused at 169.254.0.0/16 (and at the web host unless allowed).
mod reference {
    use super::*;

    /// What the URI says to fetch.
    pub enum Target {
        /// Nothing: a final status and reason.
        Done(&'static str, &'static str),
        /// Inline JSON.
        Inline(Vec<u8>),
        /// `<gateway>/ipfs/<cid>/<path>`.
        Ipfs(String, String),
        /// `<arweave>/<txid>`.
        Arweave(String),
        /// A web URL.
        Web(String),
    }

    /// `%XX` escapes decoded.
    fn percent_decode(s: &str) -> Vec<u8> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    /// The canonical root CID of a content-addressed string, if it is one.
    pub fn content_cid(s: &str) -> Option<String> {
        let canonical = |c: &str| Cid::try_from(c).ok().map(|c| c.to_string());
        if let Some(rest) = s.strip_prefix("ipfs://") {
            let rest = rest.strip_prefix("ipfs/").unwrap_or(rest);
            return canonical(rest.split('/').next()?);
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            let (_, rest) = s.split_once("/ipfs/")?;
            return canonical(rest.split('/').next()?);
        }
        canonical(s)
    }

    pub fn target(uri: &str) -> Target {
        if uri.is_empty() {
            return Target::Done(content::NO_URI, "empty");
        }
        if let Some(data) = uri.strip_prefix("data:application/json;base64,") {
            return Target::Inline(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap(),
            );
        }
        if let Some(data) = uri.strip_prefix("data:application/json,") {
            return Target::Inline(percent_decode(data));
        }
        if let Some(rest) = uri.strip_prefix("ipfs://") {
            let rest = rest.strip_prefix("ipfs/").unwrap_or(rest);
            let (cid, path) = rest.split_once('/').unwrap_or((rest, ""));
            return match Cid::try_from(cid) {
                Ok(c) => Target::Ipfs(c.to_string(), path.to_owned()),
                Err(_) => Target::Done(content::URI_PARSE_FAILED, "invalid_cid"),
            };
        }
        if let Some(txid) = uri.strip_prefix("ar://") {
            return Target::Arweave(txid.to_owned());
        }
        if let Some(rest) = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))
        {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if let Some((label, _)) = host.split_once(".ipfs.") {
                let cid = Cid::try_from(label).unwrap();
                return Target::Ipfs(cid.to_string(), path.to_owned());
            }
            if let Some(rest) = path.strip_prefix("ipfs/") {
                let (cid, path) = rest.split_once('/').unwrap_or((rest, ""));
                let cid = Cid::try_from(cid).unwrap();
                return Target::Ipfs(cid.to_string(), path.to_owned());
            }
            return Target::Web(uri.to_owned());
        }
        if let Ok(c) = Cid::try_from(uri) {
            return Target::Ipfs(c.to_string(), String::new());
        }
        match uri.split_once(':') {
            Some((scheme, _)) if !scheme.contains('/') && scheme != "ipfs" && scheme != "https" => {
                Target::Done(content::URI_PARSE_FAILED, "unsupported_scheme")
            }
            _ => Target::Done(content::URI_PARSE_FAILED, "malformed"),
        }
    }

    /// Fetches with the limits above: the body, or a fetch-failure reason.
    pub async fn fetch(
        http: &reqwest::Client,
        url: &str,
        web_host: &str,
        web_allowed: bool,
    ) -> Result<Vec<u8>, &'static str> {
        const CAP: usize = 1024 * 1024;
        const REDIRECTS: usize = 3;
        let mut url = url.to_owned();
        for hop in 0..=REDIRECTS + 1 {
            let host = url.split('/').nth(2).unwrap_or_default().to_owned();
            if host.starts_with("169.254.") || (host == web_host && !web_allowed) {
                return Err("blocked_address");
            }
            if hop > REDIRECTS {
                return Err("too_many_redirects");
            }
            let timeout = Duration::from_millis(800);
            let mut resp = match tokio::time::timeout(timeout, http.get(&url).send()).await {
                Err(_) => return Err("timeout"),
                Ok(r) => r.unwrap(),
            };
            if resp.status().is_redirection() {
                url = resp.headers()["location"].to_str().unwrap().to_owned();
                continue;
            }
            if resp.status() == 404 {
                return Err("http_404");
            }
            assert_eq!(resp.status(), 200, "{url}");
            let mut body = Vec::new();
            loop {
                match tokio::time::timeout(timeout, resp.chunk()).await {
                    Err(_) => return Err("timeout"),
                    Ok(Ok(Some(chunk))) => {
                        body.extend_from_slice(&chunk);
                        if body.len() > CAP {
                            return Err("too_large");
                        }
                    }
                    Ok(Ok(None)) => return Ok(body),
                    Ok(Err(e)) => panic!("{url}: {e}"),
                }
            }
        }
        Err("too_many_redirects")
    }

    /// The CIDs of a metadata object's assets.
    pub fn assets(meta: &serde_json::Map<String, Value>) -> BTreeSet<String> {
        fn strings(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for key in ["image", "image_url", "animation_url"] {
            if let Some(Value::String(s)) = meta.get(key) {
                found.push(s.clone());
            }
        }
        if let Some(p) = meta.get("properties") {
            strings(p, &mut found);
        }
        found.iter().filter_map(|s| content_cid(s)).collect()
    }

    /// The reference conclusion about `uri`.
    pub async fn conclude(
        http: &reqwest::Client,
        gateway: &str,
        uri: &str,
        web_allowed: bool,
    ) -> Expected {
        let web_host = gateway.split('/').nth(2).unwrap_or_default().to_owned();
        let (root, fetched) = match target(uri) {
            Target::Done(status, reason) => {
                return Expected {
                    status,
                    reason: Some(reason),
                    cids: BTreeSet::new(),
                    metadata_cid: None,
                };
            }
            Target::Inline(body) => (None, Ok(body)),
            Target::Ipfs(cid, path) => {
                let url = if path.is_empty() {
                    format!("{gateway}/ipfs/{cid}")
                } else {
                    format!("{gateway}/ipfs/{cid}/{path}")
                };
                // The configured gateway is trusted even on loopback.
                (Some(cid), fetch(http, &url, "", true).await)
            }
            Target::Arweave(txid) => (
                None,
                fetch(http, &format!("{gateway}/ar/{txid}"), "", true).await,
            ),
            Target::Web(url) => (None, fetch(http, &url, &web_host, web_allowed).await),
        };
        let failed = |status, reason| Expected {
            status,
            reason: Some(reason),
            cids: BTreeSet::new(),
            metadata_cid: root.clone(),
        };
        let body = match fetched {
            Ok(b) => b,
            Err(reason) => return failed(content::CONTENT_FETCH_FAILED, reason),
        };
        let body = body.strip_prefix(BOM).unwrap_or(&body);
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return failed(content::CONTENT_PARSE_FAILED, "invalid_json"),
        };
        let Value::Object(meta) = value else {
            return failed(content::CONTENT_PARSE_FAILED, "not_an_object");
        };
        let mut cids = assets(&meta);
        cids.extend(root.clone());
        if cids.is_empty() {
            Expected {
                status: content::PARSED,
                reason: Some("not_on_ipfs"),
                cids,
                metadata_cid: None,
            }
        } else {
            Expected {
                status: content::LINKED,
                reason: None,
                cids,
                metadata_cid: root,
            }
        }
    }
}

#[tokio::test]
async fn the_truth_matches_what_a_reference_fetcher_concludes_for_every_token() {
    let config = GatewayConfig {
        slow: Duration::from_millis(3_000),
        ..GatewayConfig::default()
    };
    // Big enough for a few web tokens of each web-only variant. Every token that does not
    // get good metadata is checked, and every tenth one that does; without the web host,
    // only web tokens (expected() of the others does not depend on it, a test below shows).
    let (served, chain) = start_gateway(20_000, 4, config).await;
    let http = client();
    for web_allowed in [true, false] {
        let sample: Vec<&MintedToken> = chain
            .tokens()
            .iter()
            .enumerate()
            .filter(|(i, t)| chain.variant(t) != Some(Variant::Good) || i % 10 == 0)
            .filter(|(_, t)| {
                web_allowed || matches!(chain.metadata_source(t), MetadataSource::Web { .. })
            })
            .map(|(_, t)| t)
            .collect();
        let chain = Arc::clone(&chain);
        let checks = futures::stream::iter(sample.iter().map(|&t| {
            let http = http.clone();
            let gateway = served.base.clone();
            let chain = Arc::clone(&chain);
            async move {
                let uri = chain.token_uri(t);
                let got = reference::conclude(&http, &gateway, &uri, web_allowed).await;
                (
                    t.graph_id.to_string(),
                    uri,
                    got,
                    chain.expected(t, web_allowed),
                )
            }
        }))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
        let mut by_status: BTreeMap<(&str, Option<&str>), usize> = BTreeMap::new();
        for (id, uri, got, want) in &checks {
            assert_eq!(got, want, "{id} {uri}");
            *by_status.entry((want.status, want.reason)).or_default() += 1;
        }
        eprintln!("web_allowed {web_allowed}: {by_status:?}");
        let reasons: BTreeSet<Option<&str>> = by_status.keys().map(|k| k.1).collect();
        let want: &[&str] = if web_allowed {
            &[
                "empty",
                "invalid_cid",
                "unsupported_scheme",
                "malformed",
                "http_404",
                "too_large",
                "timeout",
                "blocked_address",
                "too_many_redirects",
                "invalid_json",
                "not_an_object",
                "not_on_ipfs",
            ]
        } else {
            &["blocked_address"]
        };
        for reason in want {
            assert!(
                reasons.contains(&Some(*reason)),
                "{reason} missing: {by_status:?}"
            );
        }
        assert_eq!(reasons.contains(&None), web_allowed, "{by_status:?}");
    }
    served.stop().await;
}

#[tokio::test]
async fn each_variant_answers_as_designed() {
    let config = GatewayConfig {
        slow: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let (served, chain) = start_gateway(3_000, 2, config).await;
    let http = client();
    let url_of = |t: &MintedToken| match chain.metadata_source(t) {
        MetadataSource::Ipfs { cid, path } if path.is_empty() => {
            format!("{}/ipfs/{cid}", served.base)
        }
        MetadataSource::Ipfs { cid, path } => format!("{}/ipfs/{cid}/{path}", served.base),
        MetadataSource::Arweave { txid } => format!("{}/ar/{txid}", served.base),
        MetadataSource::Web { path } => format!("{}/web/{path}", served.base),
        other => panic!("{other:?}"),
    };
    let mut seen: HashMap<Variant, usize> = HashMap::new();
    for t in chain.tokens() {
        let Some(variant) = chain.variant(t) else {
            continue;
        };
        let n = seen.entry(variant).or_default();
        *n += 1;
        if *n > 3 {
            continue;
        }
        let url = url_of(t);
        let started = Instant::now();
        let r = http.get(&url).send().await.unwrap();
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let length = r.headers().get("content-length").cloned();
        let body = r.bytes().await.unwrap();
        let json: Option<Value> =
            serde_json::from_slice(body.strip_prefix(BOM).unwrap_or(&body)).ok();
        match variant {
            Variant::Good => {
                assert_eq!(status, 200);
                assert!(json.unwrap().is_object());
                assert_eq!(body.starts_with(BOM), chain.metadata_shape(t).bom);
            }
            Variant::NotFound => assert_eq!(status, 404),
            Variant::InvalidJson => {
                assert_eq!(status, 200);
                assert!(json.is_none(), "{url}");
            }
            Variant::NotAnObject => {
                assert_eq!(status, 200);
                assert!(!json.unwrap().is_object());
            }
            Variant::Huge => {
                assert_eq!(status, 200);
                assert!(body.len() > HUGE_BYTES, "{}", body.len());
                assert!(json.unwrap().is_object());
                assert_eq!(length.is_none(), chain.huge_is_chunked(t));
            }
            Variant::Slow => {
                assert_eq!(status, 200);
                assert!(started.elapsed() >= Duration::from_millis(300));
                assert!(json.unwrap().is_object());
            }
            Variant::Redirect => {
                assert_eq!(status, 302);
                let to = location.unwrap();
                assert_eq!(to, format!("{url}?hop=1"));
                let r = http.get(&to).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
            Variant::MetadataAddressRedirect => {
                assert_eq!(status, 302);
                assert_eq!(location.as_deref(), Some(METADATA_ADDRESS_URL));
            }
            Variant::RedirectChain => {
                let mut hops = 0;
                let mut next = location;
                while let Some(to) = next {
                    hops += 1;
                    let r = http.get(&to).send().await.unwrap();
                    next = r
                        .headers()
                        .get("location")
                        .map(|v| v.to_str().unwrap().to_owned());
                    if next.is_none() {
                        assert_eq!(r.status(), 200);
                    }
                }
                assert_eq!(hops, content::REDIRECT_CHAIN_HOPS);
            }
        }
    }
    for row in VARIANTS {
        assert!(seen.contains_key(&row.variant), "{:?} missing", row.variant);
    }
    // Unknown and invalid addresses.
    for (path, want) in [
        (format!("/ipfs/{OTHER_CID}"), 404),
        (format!("/ipfs/{OTHER_CID}/1.json"), 404),
        ("/ipfs/notacid".to_owned(), 400),
        ("/ar/AAAA".to_owned(), 404),
        ("/web/meta/0x00/1".to_owned(), 404),
    ] {
        let r = http
            .get(format!("{}{path}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    // A folder token under the wrong path is not found.
    let folder = chain
        .tokens()
        .iter()
        .find(|t| {
            chain.token_uri_kind(t) == UriKind::IpfsPath && chain.variant(t) == Some(Variant::Good)
        })
        .unwrap();
    let MetadataSource::Ipfs { cid, path } = chain.metadata_source(folder) else {
        unreachable!()
    };
    let bare = path.trim_end_matches(".json");
    let r = http
        .get(format!("{}/ipfs/{cid}/{bare}", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The same content under its CIDv0 or v1 spelling.
    let v0 = chain
        .tokens()
        .iter()
        .find(|t| {
            chain.token_uri_kind(t) == UriKind::IpfsCidV0 && chain.variant(t) == Some(Variant::Good)
        })
        .unwrap();
    let MetadataSource::Ipfs { cid, .. } = chain.metadata_source(v0) else {
        unreachable!()
    };
    let v1 = Cid::try_from(cid.as_str()).unwrap().into_v1().unwrap();
    let r = http
        .get(format!("{}/ipfs/{v1}", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    served.stop().await;
}

#[tokio::test]
async fn gateway_errors_are_transient_and_latency_applies() {
    let config = GatewayConfig {
        error_rate: 0.5,
        latency: Duration::from_millis(30),
        seed: 3,
        ..GatewayConfig::default()
    };
    let (served, chain) = start_gateway(500, 1, config).await;
    let http = client();
    let token = chain
        .tokens()
        .iter()
        .find(|t| {
            chain.variant(t) == Some(Variant::Good)
                && matches!(chain.metadata_source(t), MetadataSource::Web { .. })
        })
        .unwrap();
    let url = chain.token_uri(token);
    assert!(url.starts_with(&served.base));
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    let started = Instant::now();
    for _ in 0..60 {
        let r = http.get(&url).send().await.unwrap();
        *codes.entry(r.status().as_u16()).or_default() += 1;
    }
    assert!(started.elapsed() >= Duration::from_millis(60 * 30));
    assert!(codes.get(&200).is_some_and(|n| *n >= 15), "{codes:?}");
    assert!(
        codes.keys().all(|c| [200, 502, 504].contains(c)),
        "{codes:?}"
    );
    assert!(
        codes.contains_key(&502) && codes.contains_key(&504),
        "{codes:?}"
    );
    served.stop().await;
}

#[test]
fn variant_shares_over_ten_thousand_tokens_are_as_designed() {
    let chain = generate(&ChainParams {
        tokens: 10_000,
        seed: 1,
        head_tail: 30,
        web_base: Some("http://127.0.0.1:9/web".to_owned()),
    });
    let mut all: HashMap<Variant, f64> = HashMap::new();
    let mut web: HashMap<Variant, f64> = HashMap::new();
    let (mut n_all, mut n_web) = (0.0, 0.0);
    for t in chain.tokens() {
        let Some(v) = chain.variant(t) else { continue };
        let is_web = matches!(chain.metadata_source(t), MetadataSource::Web { .. });
        if is_web {
            *web.entry(v).or_default() += 1.0;
            n_web += 1.0;
        } else {
            *all.entry(v).or_default() += 1.0;
            n_all += 1.0;
        }
    }
    assert!(n_all > 3_000.0 && n_web > 150.0, "{n_all} {n_web}");
    let web_only: f64 = VARIANTS
        .iter()
        .filter(|r| r.web_only)
        .map(|r| f64::from(r.per_mille) / 1_000.0)
        .sum();
    for row in VARIANTS {
        let p = f64::from(row.per_mille) / 1_000.0;
        // Other tokens that draw a web-only variant get good metadata.
        let (p_other, p_web) = match (row.variant, row.web_only) {
            (Variant::Good, _) => (p + web_only, p),
            (_, true) => (0.0, p),
            (_, false) => (p, p),
        };
        for (counts, n, want) in [(&all, n_all, p_other), (&web, n_web, p_web)] {
            let got = counts.get(&row.variant).copied().unwrap_or(0.0) / n;
            let slack = 4.0 * (want * (1.0 - want) / n).sqrt() + 0.003;
            assert!(
                (got - want).abs() <= slack,
                "{:?}: {got:.4} of {n}, want {want:.4}",
                row.variant
            );
        }
    }
    assert_eq!(VARIANTS.iter().map(|r| r.per_mille).sum::<u32>(), 1_000);
}

#[test]
fn expected_covers_every_token_with_the_pinners_vocabulary() {
    let chain = generate(&ChainParams {
        tokens: 10_000,
        seed: 5,
        head_tail: 30,
        web_base: Some("http://127.0.0.1:9/web".to_owned()),
    });
    let vocabulary: BTreeMap<&str, &[Option<&str>]> = BTreeMap::from([
        (content::NO_URI, &[Some("empty")][..]),
        (
            content::URI_PARSE_FAILED,
            &[
                Some("invalid_cid"),
                Some("unsupported_scheme"),
                Some("malformed"),
            ][..],
        ),
        (
            content::CONTENT_FETCH_FAILED,
            &[
                Some("http_404"),
                Some("too_large"),
                Some("timeout"),
                Some("blocked_address"),
                Some("too_many_redirects"),
            ][..],
        ),
        (
            content::CONTENT_PARSE_FAILED,
            &[Some("invalid_json"), Some("not_an_object")][..],
        ),
        (content::PARSED, &[Some("not_on_ipfs")][..]),
        (content::LINKED, &[None][..]),
    ]);
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<UriKind, BTreeSet<&str>> = BTreeMap::new();
    for t in chain.tokens() {
        let e = chain.expected(t, true);
        let reasons = vocabulary[e.status];
        assert!(reasons.contains(&e.reason), "{e:?}");
        assert_eq!(e.cids.is_empty(), e.status != content::LINKED, "{e:?}");
        for cid in &e.cids {
            assert_eq!(&Cid::try_from(cid.as_str()).unwrap().to_string(), cid);
        }
        if let Some(root) = &e.metadata_cid {
            assert!(chain.token_uri(t).contains(root.as_str()));
        }
        *statuses.entry(e.status).or_default() += 1;
        kinds
            .entry(chain.token_uri_kind(t))
            .or_default()
            .insert(e.status);
        // Without the web host every web token is refused.
        let blocked = chain.expected(t, false);
        if matches!(chain.metadata_source(t), MetadataSource::Web { .. }) {
            assert_eq!(blocked.reason, Some("blocked_address"));
        } else {
            assert_eq!(blocked, e);
        }
    }
    assert_eq!(statuses.len(), 6, "{statuses:?}");
    assert_eq!(kinds.len(), UriKind::ALL.len());
    let linked = statuses[content::LINKED] as f64 / 10_000.0;
    assert!((0.5..0.85).contains(&linked), "{statuses:?}");
}

#[test]
fn metadata_sources_agree_with_the_uris() {
    let base = "http://127.0.0.1:9/web";
    let chain = generate(&ChainParams {
        tokens: 3_000,
        seed: 6,
        head_tail: 30,
        web_base: Some(base.to_owned()),
    });
    for t in chain.tokens() {
        let uri = chain.token_uri(t);
        match (chain.metadata_source(t), reference::target(&uri)) {
            (MetadataSource::Ipfs { cid, path }, reference::Target::Ipfs(c, p)) => {
                assert_eq!((cid, path), (c, p), "{uri}");
            }
            (MetadataSource::Arweave { txid }, reference::Target::Arweave(id)) => {
                assert_eq!(txid, id);
            }
            (MetadataSource::Web { path }, reference::Target::Web(url)) => {
                assert_eq!(format!("{base}/{path}"), url);
            }
            (MetadataSource::Inline, reference::Target::Inline(_)) => {}
            (MetadataSource::Nowhere, reference::Target::Done(..)) => {}
            (source, _) => panic!("{uri}: {source:?}"),
        }
    }
    // Without a web base, web URIs name example hosts as before.
    let plain = generate(&ChainParams {
        tokens: 3_000,
        seed: 6,
        head_tail: 30,
        web_base: None,
    });
    let web = plain
        .tokens()
        .iter()
        .find(|t| plain.token_uri_kind(t) == UriKind::Https)
        .unwrap();
    assert!(plain.token_uri(web).starts_with("https://"));
    assert!(plain.token_uri(web).contains("example."));
}

#[tokio::test]
async fn mined_tokens_are_served_by_the_gateway() {
    let mut config = DevnetConfig::default();
    config.chain.tokens = 500;
    let full = start_full(config).await;
    let http = client();
    let r = http
        .post(format!("{}/mine", full.admin))
        .json(&json!({"blocks": 3, "tokens": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut chain = generate(&full.params);
    let before = chain.tokens().len();
    chain.mine(3, 300);
    let mut checked = 0;
    for t in &chain.tokens()[before..] {
        if chain.variant(t) != Some(Variant::Good) {
            continue;
        }
        let url = match chain.metadata_source(t) {
            MetadataSource::Ipfs { cid, path } if path.is_empty() => {
                format!("{}/ipfs/{cid}", full.gateway)
            }
            MetadataSource::Ipfs { cid, path } => format!("{}/ipfs/{cid}/{path}", full.gateway),
            MetadataSource::Arweave { txid } => format!("{}/ar/{txid}", full.gateway),
            MetadataSource::Web { .. } => chain.token_uri(t),
            _ => continue,
        };
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
    full.served.stop().await;
}

#[test]
#[ignore = "timing: cargo test --release -p nifty --lib devnet::service_tests -- --ignored --nocapture"]
fn a_million_token_index_builds_in_seconds() {
    let chain = generate(&ChainParams {
        tokens: 1_000_000,
        seed: 1,
        head_tail: 30,
        web_base: None,
    });
    let started = Instant::now();
    let index = live::ContentIndex::build(&chain);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "index of 1M tokens in {secs:.2}s: {index:?}",
        index = index.sizes()
    );
    assert!(secs < 10.0);
}

#[test]
#[ignore = "benchmark: cargo test --release -p nifty --lib devnet::service_tests -- --ignored --nocapture"]
fn bench_cluster_pins_per_second_on_one_core() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let cluster = Arc::new(Cluster::new(ClusterConfig::default()));
    let (stop, stopped) = oneshot::channel::<()>();
    let served = Arc::clone(&cluster);
    // The server gets one thread: one core.
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve_cluster(listener, served, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        thread_cpu_secs()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: u64 = std::env::var("NIFTY_BENCH_PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    rt.block_on(async move {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let started = Instant::now();
        let ok = futures::stream::iter(0..n)
            .map(|i| {
                let http = http.clone();
                let url = format!(
                    "{base}/pins/{}?name=token%20{i}&meta-role=image&meta-token=0xabc_{i}",
                    chain::cid_v1(i, false)
                );
                async move { http.post(url).send().await.unwrap().status().as_u16() == 200 }
            })
            .buffer_unordered(64)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{ok} POST /pins in {secs:.2}s = {:.0}/s (server on one thread)",
            ok as f64 / secs
        );
        assert_eq!(ok as u64, n);
        let started = Instant::now();
        let stats = cluster.stats();
        eprintln!("stats of {} pins in {:?}", stats.pins, started.elapsed());
        drop(stop);
    });
    let cpu = server.join().unwrap();
    if let Some(cpu) = cpu {
        eprintln!(
            "server thread CPU {cpu:.2}s = {:.1} µs per POST = {:.0} POST/s per core",
            cpu * 1e6 / n as f64,
            n as f64 / cpu
        );
    }
}

/// CPU seconds (user + system) of the calling thread, from /proc on Linux.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on Linux.
    Some(ticks / 100.0)
}
