//! The metrics this crate records, by name, and their descriptions.
//!
//! Recording goes through the `metrics` facade: the binary installs the exporter, and
//! without one every record is a no-op, so tests and library users pay nothing.

/// Seconds one HTTP request to a pinning backend took, each retry attempt recorded on its
/// own (backoff waits excluded; reading and parsing the answer included). Labels: `api` is
/// `cluster` (IPFS Cluster REST) or `psa` (Pinning Service API); `op` is `pin`, `status`
/// or `recover` (a PSA recover is a new pin request, counted as `recover`); `outcome` is
/// `ok` or the failure's [`BackendError::reason`](crate::backend::BackendError::reason):
/// `http_<status>` (a three-digit status code), `timeout`, `connect`, `transport`,
/// `decode` or `stream_error`.
pub const CLUSTER_REQUEST_SECONDS: &str = "nifty_cluster_request_duration_seconds";

/// Seconds one metadata fetch attempt took, each retry recorded on its own, body included.
/// Labels: `kind` is `ipfs`, `ipns`, `arweave` (through the configured gateways) or `web`
/// (the token's own server); `outcome` is `ok` or the
/// [`FetchReason::name`](crate::fetch::FetchReason::name): `http_<status>`, `timeout`,
/// `too_large`, `blocked_address`, `too_many_redirects`, `dns`, `connect`, `body` or
/// `invalid_url`. Web URLs refused before any request (a private address, a scheme other
/// than http(s)) are recorded too, at about zero seconds, so refusals show next to fetches.
pub const GATEWAY_FETCH_SECONDS: &str = "nifty_gateway_fetch_duration_seconds";

/// Gives the installed recorder the unit and help text of every metric of this crate. Call
/// once, after installing the recorder; before it, this does nothing.
pub fn describe() {
    metrics::describe_histogram!(
        CLUSTER_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one pinning backend HTTP request attempt, by api, op and outcome."
    );
    metrics::describe_histogram!(
        GATEWAY_FETCH_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one metadata fetch attempt, by kind (ipfs, ipns, arweave, web) and outcome."
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use cid::Cid;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use nifty_scraper::retry::Backoff;
    use secrecy::SecretString;
    use url::Url;

    use super::{CLUSTER_REQUEST_SECONDS, GATEWAY_FETCH_SECONDS};
    use crate::backend::{ClusterClient, ClusterOptions, PinMeta, PsaClient, PsaOptions};
    use crate::fetch::{FetchOptions, Fetcher};
    use crate::uri::Target;

    const CID: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    /// Samples per label set of one histogram, each label set sorted and written
    /// `key=value`.
    fn samples(snap: &Snapshotter, name: &str) -> BTreeMap<Vec<String>, usize> {
        let mut out = BTreeMap::new();
        for (key, _, _, value) in snap.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            if kind != MetricKind::Histogram || key.name() != name {
                continue;
            }
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let DebugValue::Histogram(values) = value else {
                panic!("{name} is not a histogram");
            };
            assert!(values.iter().all(|v| v.0 >= 0.0), "{values:?}");
            out.insert(labels, values.len());
        }
        out
    }

    fn want(rows: &[(&[&str], usize)]) -> BTreeMap<Vec<String>, usize> {
        rows.iter()
            .map(|(labels, n)| (labels.iter().map(|l| (*l).to_owned()).collect(), *n))
            .collect()
    }

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            max_attempts: 3,
        }
    }

    /// A cluster whose first pin answer is a 503 and whose recover is a 404, a pinning
    /// service that queues everything, and a gateway that serves `/ipfs/*` only.
    async fn server() -> std::net::SocketAddr {
        let pins = Arc::new(AtomicUsize::new(0));
        let pin_status = format!(
            r#"{{"requestid":"r1","status":"queued","created":"2024-01-01T00:00:00Z","pin":{{"cid":"{CID}"}},"delegates":[]}}"#
        );
        let app = Router::new()
            .route(
                "/cluster/pins/{cid}",
                post(|State(pins): State<Arc<AtomicUsize>>| async move {
                    if pins.fetch_add(1, Ordering::SeqCst) == 0 {
                        (StatusCode::SERVICE_UNAVAILABLE, "{}")
                    } else {
                        (StatusCode::OK, r#"{"cid":"x"}"#)
                    }
                }),
            )
            .route(
                "/cluster/pins/{cid}/recover",
                post(|| async { (StatusCode::NOT_FOUND, r#"{"code":404,"message":"no"}"#) }),
            )
            .route("/cluster/pins", get(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/psa/pins",
                post(move || async move {
                    (
                        StatusCode::ACCEPTED,
                        [("content-type", "application/json")],
                        pin_status,
                    )
                }),
            )
            .route("/ipfs/{*rest}", get(|| async { r#"{"name":"ok"}"# }))
            .with_state(pins);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Every backend request attempt is timed under its api, op and outcome: the 503 and
    /// the retry that follows it are two samples.
    #[tokio::test]
    async fn backend_requests_are_timed_per_attempt() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        // The test runs on one thread (tokio's default for tests), so the thread-local
        // recorder sees every record the clients make.
        let _guard = metrics::set_default_local_recorder(&recorder);
        let addr = server().await;
        let cid = Cid::try_from(CID).unwrap();
        let meta = PinMeta::default();

        let cluster = ClusterClient::new(ClusterOptions {
            backoff: backoff(),
            ..ClusterOptions::new(Url::parse(&format!("http://{addr}/cluster")).unwrap())
        })
        .unwrap();
        cluster.pin(&cid, &meta).await.unwrap();
        cluster.status(&[cid]).await.unwrap();
        let err = cluster.recover(&cid).await.unwrap_err();
        assert_eq!(err.reason(), "http_404");

        let psa = PsaClient::new(PsaOptions {
            backoff: backoff(),
            ..PsaOptions::new(
                Url::parse(&format!("http://{addr}/psa")).unwrap(),
                SecretString::from("psa-token".to_owned()),
            )
        })
        .unwrap();
        psa.recover(&cid, &meta).await.unwrap();

        assert_eq!(
            samples(&snap, CLUSTER_REQUEST_SECONDS),
            want(&[
                (&["api=cluster", "op=pin", "outcome=http_503"], 1),
                (&["api=cluster", "op=pin", "outcome=ok"], 1),
                (&["api=cluster", "op=recover", "outcome=http_404"], 1),
                (&["api=cluster", "op=status", "outcome=ok"], 1),
                (&["api=psa", "op=recover", "outcome=ok"], 1),
            ])
        );
    }

    /// Fetches are timed by kind and outcome, and a web URL the guard refuses is recorded
    /// though no request was made.
    #[tokio::test]
    async fn fetches_and_refusals_are_timed() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let addr = server().await;
        let fetcher = Fetcher::new(FetchOptions::new(
            Url::parse(&format!("http://{addr}/")).unwrap(),
            Url::parse(&format!("http://{addr}/ar")).unwrap(),
        ))
        .unwrap();

        let ipfs = Target::Ipfs {
            cid: Cid::try_from(CID).unwrap(),
            path: String::new(),
        };
        fetcher.fetch(&ipfs).await.unwrap();
        let ipns = Target::Ipns {
            name: "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8".into(),
            path: String::new(),
        };
        fetcher.fetch(&ipns).await.unwrap_err();
        // Loopback, not on the allow list: refused before any connection.
        let web = Target::Web(Url::parse(&format!("http://{addr}/ipfs/x")).unwrap());
        fetcher.fetch(&web).await.unwrap_err();

        assert_eq!(
            samples(&snap, GATEWAY_FETCH_SECONDS),
            want(&[
                (&["kind=ipfs", "outcome=ok"], 1),
                (&["kind=ipns", "outcome=http_404"], 1),
                (&["kind=web", "outcome=blocked_address"], 1),
            ])
        );
    }

    /// The descriptions reach the recorder with their unit, and without a recorder
    /// describing does nothing.
    #[test]
    fn every_histogram_is_described_in_seconds() {
        super::describe();
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            super::describe();
            for name in [CLUSTER_REQUEST_SECONDS, GATEWAY_FETCH_SECONDS] {
                metrics::histogram!(name).record(0.0);
            }
        });
        let described: Vec<_> = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, help, _)| (key.key().name().to_owned(), unit, help.is_some()))
            .collect();
        assert_eq!(described.len(), 2, "{described:?}");
        for (name, unit, help) in described {
            assert_eq!((unit, help), (Some(metrics::Unit::Seconds), true), "{name}");
        }
    }
}
