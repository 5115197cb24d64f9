//! The metadata fetcher against real servers on loopback: the private-address guard
//! (hostile URLs, redirects, names), size cap, timeout and redirect limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nifty_pinner::fetch::{FetchOptions, FetchReason, Fetcher};
use nifty_pinner::uri::Target;
use url::Url;

/// A server on 127.0.0.1:0 counting connections' requests; routes:
/// `/ok` JSON, `/big` 2 MiB, `/slow` 5 s, `/go/<url>` redirect to the URL (percent-decoded),
/// `/hop/<n>` redirect chain, `/404`.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/ok", get(|| async { r#"{"name":"ok"}"# }))
        .route("/big", get(|| async { "x".repeat(2 * 1024 * 1024) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "{}"
            }),
        )
        .route(
            "/img",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], "PNG...") }),
        )
        .route(
            "/go/{*to}",
            get(|Path(to): Path<String>| async move {
                let to = percent_encoding::percent_decode_str(&to)
                    .decode_utf8_lossy()
                    .into_owned();
                redirect(&to)
            }),
        )
        .route(
            "/hop/{n}",
            get(|Path(n): Path<u32>| async move {
                if n == 0 {
                    redirect("/ok")
                } else {
                    redirect(&format!("/hop/{}", n - 1))
                }
            }),
        )
        .route("/404", get(|| async { StatusCode::NOT_FOUND }))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&hits),
            |State(hits): State<Arc<AtomicUsize>>,
             req: axum::extract::Request,
             next: axum::middleware::Next| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                next.run(req).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

fn fetcher(allow: &[&str], resolve: &[(&str, IpAddr)]) -> Fetcher {
    let mut opts = FetchOptions::new(
        Url::parse("http://127.0.0.1:9/").unwrap(),
        Url::parse("http://127.0.0.1:9/ar").unwrap(),
    );
    opts.timeout = Duration::from_millis(1500);
    opts.allow_hosts = allow.iter().map(|s| s.to_string()).collect();
    opts.resolve = resolve
        .iter()
        .map(|(n, ip)| (n.to_string(), vec![*ip]))
        .collect();
    Fetcher::new(opts).unwrap()
}

fn web(url: &str) -> Target {
    Target::Web(Url::parse(url).unwrap())
}

#[tokio::test]
async fn hostile_urls_are_refused_before_any_connection() {
    let (addr, hits) = server().await;
    let p = addr.port();
    let f = fetcher(
        &[],
        &[
            ("internal.example", "10.1.2.3".parse().unwrap()),
            ("rebind.example", "127.0.0.1".parse().unwrap()),
        ],
    );
    let hostile = [
        format!("http://127.0.0.1:{p}/ok"),
        format!("http://localhost:{p}/ok"),
        format!("http://LOCALHOST.:{p}/ok"),
        format!("http://app.localhost:{p}/ok"),
        format!("http://2130706433:{p}/ok"),
        format!("http://017700000001:{p}/ok"),
        format!("http://0177.0.0.1:{p}/ok"),
        format!("http://0x7f.0.0.1:{p}/ok"),
        format!("http://0x7f000001:{p}/ok"),
        format!("http://127.1:{p}/ok"),
        format!("http://[::1]:{p}/ok"),
        format!("http://[::ffff:127.0.0.1]:{p}/ok"),
        format!("http://[::ffff:7f00:1]:{p}/ok"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/ok"),
        format!("http://[::127.0.0.1]:{p}/ok"),
        format!("http://[64:ff9b::7f00:1]:{p}/ok"),
        format!("http://[2002:7f00:1::]:{p}/ok"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://100.100.100.200/latest/meta-data/".to_owned(),
        "http://metadata.google.internal.localhost/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://172.16.5.4/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        "http://0/".to_owned(),
        "http://[::]/".to_owned(),
        "http://224.0.0.251/".to_owned(),
        "http://255.255.255.255/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://[ff02::1]/".to_owned(),
        "http://internal.example/".to_owned(),
        format!("http://rebind.example:{p}/ok"),
    ];
    assert!(hostile.len() >= 20);
    for url in &hostile {
        let err = f.fetch(&web(url)).await.expect_err(url);
        assert_eq!(err.reason, FetchReason::BlockedAddress, "{url}: {err}");
        assert!(!err.gateway_outage);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused URL reached the server"
    );
}

#[tokio::test]
async fn redirects_from_an_allowed_host_are_checked_hop_by_hop() {
    let (addr, hits) = server().await;
    let p = addr.port();
    // A public-looking name, allowed, that resolves (here) to the test server.
    let f = fetcher(
        &["nft.example.com"],
        &[("nft.example.com", "127.0.0.1".parse().unwrap())],
    );
    let ok = f
        .fetch(&web(&format!("http://nft.example.com:{p}/ok")))
        .await
        .unwrap();
    assert_eq!(ok.body, br#"{"name":"ok"}"#);
    let targets = [
        format!("http://127.0.0.1:{p}/ok"),
        format!("http://localhost:{p}/ok"),
        format!("http://[::ffff:127.0.0.1]:{p}/ok"),
        format!("http://2130706433:{p}/ok"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    for to in &targets {
        let enc: String =
            percent_encoding::utf8_percent_encode(to, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let url = format!("http://nft.example.com:{p}/go/{enc}");
        let before = hits.load(Ordering::SeqCst);
        let err = f.fetch(&web(&url)).await.expect_err(to);
        assert_eq!(err.reason, FetchReason::BlockedAddress, "{to}: {err}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            before + 1,
            "only the first hop is served"
        );
    }
    // Same-host redirects are fine, up to three.
    let ok = f
        .fetch(&web(&format!("http://nft.example.com:{p}/hop/2")))
        .await
        .unwrap();
    assert_eq!(ok.body, br#"{"name":"ok"}"#);
    let err = f
        .fetch(&web(&format!("http://nft.example.com:{p}/hop/3")))
        .await
        .unwrap_err();
    assert_eq!(err.reason, FetchReason::TooManyRedirects, "{err}");
}

#[tokio::test]
async fn allowed_hosts_fetch_and_failures_have_reasons() {
    let (addr, _) = server().await;
    let base = format!("http://127.0.0.1:{}", addr.port());
    let f = fetcher(&["127.0.0.1"], &[]);
    assert_eq!(
        f.fetch(&web(&format!("{base}/ok"))).await.unwrap().body,
        br#"{"name":"ok"}"#
    );
    let cases = [
        ("/404", FetchReason::Http(404)),
        ("/big", FetchReason::TooLarge),
        ("/slow", FetchReason::Timeout),
    ];
    for (path, reason) in cases {
        let err = f.fetch(&web(&format!("{base}{path}"))).await.unwrap_err();
        assert_eq!(err.reason, reason, "{path}: {err}");
    }
    let img = f.fetch(&web(&format!("{base}/img"))).await.unwrap();
    assert!(img.media && img.body.is_empty());
    // Allowing 127.0.0.1 does not allow the rest of loopback or the metadata service.
    for url in ["http://127.0.0.2/", "http://169.254.169.254/"] {
        assert_eq!(
            f.fetch(&web(url)).await.unwrap_err().reason,
            FetchReason::BlockedAddress
        );
    }
    // A closed port is a connection failure of the token's server, not a gateway outage.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = f
        .fetch(&web(&format!("http://127.0.0.1:{closed}/x?key=SECRET")))
        .await
        .unwrap_err();
    assert_eq!(err.reason, FetchReason::Connect);
    assert!(!err.gateway_outage);
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

#[tokio::test]
async fn a_down_gateway_is_an_outage_not_a_token_failure() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut opts = FetchOptions::new(
        Url::parse(&format!("http://127.0.0.1:{closed}")).unwrap(),
        Url::parse(&format!("http://127.0.0.1:{closed}/ar")).unwrap(),
    );
    opts.timeout = Duration::from_millis(500);
    let f = Fetcher::new(opts).unwrap();
    let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let target = nifty_pinner::uri::analyse(&format!("ipfs://{cid}/1.json"))
        .unwrap()
        .target;
    assert_eq!(
        f.location(&target).unwrap().0.as_str(),
        format!("http://127.0.0.1:{closed}/ipfs/{cid}/1.json")
    );
    let err = f.fetch(&target).await.unwrap_err();
    assert!(err.gateway_outage, "{err}");
}

#[tokio::test]
async fn transient_gateway_errors_are_retried() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let app = Router::new().route(
        "/ipfs/{*rest}",
        get(move || {
            let c = Arc::clone(&c);
            async move {
                match c.fetch_add(1, Ordering::SeqCst) {
                    0 => StatusCode::GATEWAY_TIMEOUT.into_response(),
                    1 => StatusCode::BAD_GATEWAY.into_response(),
                    _ => r#"{"name":"third time"}"#.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    let f = Fetcher::new(FetchOptions::new(base.clone(), base)).unwrap();
    let target = nifty_pinner::uri::analyse(
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/1.json",
    )
    .unwrap()
    .target;
    let got = f.fetch(&target).await.unwrap();
    assert_eq!(got.body, br#"{"name":"third time"}"#);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

/// A gateway that times out once (while it looks for providers, say) and then answers: the
/// token gets its metadata, not a `timeout` failure for good.
#[tokio::test]
async fn a_gateway_timeout_is_retried() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let app = Router::new().route(
        "/ipfs/{*rest}",
        get(move || {
            let c = Arc::clone(&c);
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                r#"{"name":"after a timeout"}"#.into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    let mut opts = FetchOptions::new(base.clone(), base);
    opts.timeout = Duration::from_millis(300);
    let f = Fetcher::new(opts).unwrap();
    let target = nifty_pinner::uri::analyse(
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/1.json",
    )
    .unwrap()
    .target;
    let got = f.fetch(&target).await.unwrap();
    assert_eq!(got.body, br#"{"name":"after a timeout"}"#);
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// Metadata that always times out, met once by a passing 502: the token's failure is the
/// timeout it met on most attempts, not the blip on the last one.
#[tokio::test]
async fn a_failure_after_every_attempt_is_named_by_its_most_frequent_reason() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let app = Router::new().route(
        "/ipfs/{*rest}",
        get(move || {
            let c = Arc::clone(&c);
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 3 {
                    return StatusCode::BAD_GATEWAY.into_response();
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
                r#"{"name":"too late"}"#.into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    let mut opts = FetchOptions::new(base.clone(), base);
    opts.timeout = Duration::from_millis(200);
    let f = Fetcher::new(opts).unwrap();
    let target = nifty_pinner::uri::analyse(
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/1.json",
    )
    .unwrap()
    .target;
    let err = f.fetch(&target).await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert_eq!(err.reason, FetchReason::Timeout, "{err}");
    assert!(!err.gateway_outage, "{err}");
}
