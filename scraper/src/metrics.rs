//! The metrics this crate records, by name, and their descriptions.
//!
//! Recording goes through the `metrics` facade: the binary installs the exporter, and
//! without one every record is a no-op, so tests and library users pay nothing.

/// Seconds one HTTP request to the subgraph took, each retry attempt recorded on its own
/// (the backoff waits between attempts are not in it). Labels: `op` is `meta` (the `_meta`
/// snapshot query) or `page` (a tokens page); `outcome` is `ok` or one of `http_429`,
/// `http_5xx`, `http_4xx`, `timeout`, `connect`, `body` (an answer that broke off after
/// the status arrived), `too_large` (an answer over the bound, not read further),
/// `decode`, `graphql_retryable`, `graphql`, `indexing_error`, `snapshot_unavailable` (the
/// error's [`ScrapeError::kind`](crate::ScrapeError::kind)).
pub const GRAPH_REQUEST_SECONDS: &str = "nifty_graph_request_duration_seconds";

/// Seconds one JSON-RPC request to a chain node took (a batch counts once), each retry
/// recorded on its own. Labels: `method` (`eth_getLogs`, `eth_call`, `eth_getBlockByNumber`,
/// `eth_blockNumber`, `eth_getCode`, `other`); `outcome` is `ok`, `rpc_error` (the node
/// answered with a JSON-RPC error) or one of `http_429`, `http_5xx`, `http_4xx`, `timeout`,
/// `connect`, `decode`, `too_large` (an answer over the source's `max_body_mb`).
pub const RPC_REQUEST_SECONDS: &str = "nifty_rpc_request_duration_seconds";

/// `eth_getLogs` queries a node refused as too large, so the range was shrunk.
pub const RPC_RANGE_SHRINKS: &str = "nifty_rpc_range_shrinks_total";

/// Reorgs the chain source found and unwound.
pub const RPC_REORGS: &str = "nifty_rpc_reorgs_total";

/// Gives the installed recorder the unit and help text of every metric of this crate. Call
/// once, after installing the recorder; before it, this does nothing.
pub fn describe() {
    metrics::describe_histogram!(
        GRAPH_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one subgraph HTTP request attempt, by op (meta, page) and outcome."
    );
    metrics::describe_histogram!(
        RPC_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one chain node JSON-RPC request (a batch counts once), by method and outcome."
    );
    metrics::describe_counter!(
        RPC_RANGE_SHRINKS,
        "eth_getLogs queries refused as too large, by source; the range was shrunk."
    );
    metrics::describe_counter!(
        RPC_REORGS,
        "Reorgs found below a chain source's cursor and unwound, by source."
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::{BTreeMap, VecDeque};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::GRAPH_REQUEST_SECONDS;
    use crate::graph::{GraphClient, GraphClientConfig};
    use crate::retry::Backoff;

    /// Samples per label set of one histogram, labels sorted.
    fn samples(snap: &Snapshotter, name: &str) -> BTreeMap<Vec<(String, String)>, usize> {
        let mut out = BTreeMap::new();
        for (key, _, _, value) in snap.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            if kind != MetricKind::Histogram || key.name() != name {
                continue;
            }
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
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

    fn labels(op: &str, outcome: &str) -> Vec<(String, String)> {
        vec![
            ("op".to_owned(), op.to_owned()),
            ("outcome".to_owned(), outcome.to_owned()),
        ]
    }

    /// Each attempt is timed on its own: a 503 and the retry that succeeds are two samples
    /// under different outcomes, and a page that fails for good is one.
    #[tokio::test]
    async fn every_attempt_is_timed_with_its_op_and_outcome() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        // The test runs on one thread (tokio's default for tests), so the thread-local
        // recorder sees every record the client makes.
        let _guard = metrics::set_default_local_recorder(&recorder);

        let answers: VecDeque<(u16, &'static str)> = [
            (503, "upstream down"),
            (
                200,
                r#"{"data":{"_meta":{"block":{"number":120},"hasIndexingErrors":false}}}"#,
            ),
            (200, r#"{"data":{"rest":[],"next":[]}}"#),
            (
                200,
                r#"{"errors":[{"message":"Type `Token` has no field `x`"}]}"#,
            ),
        ]
        .into();
        let script = Arc::new(Mutex::new(answers));
        let app = Router::new()
            .route(
                "/",
                post(
                    |State(s): State<Arc<Mutex<VecDeque<(u16, &'static str)>>>>| async move {
                        let (status, body) = s.lock().unwrap().pop_front().unwrap();
                        (
                            StatusCode::from_u16(status).unwrap(),
                            [("content-type", "application/json")],
                            body,
                        )
                    },
                ),
            )
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let client = GraphClient::new(GraphClientConfig {
            secrets: Default::default(),

            max_row_bytes: crate::graph::client::DEFAULT_MAX_ROW_BYTES,
            url: format!("http://{addr}/"),
            api_key: None,
            timeout: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(5),
                max_attempts: 3,
            },
        })
        .unwrap();
        let snapshot = client.snapshot(20).await.unwrap();
        client.page(0, "", 100, 10, snapshot.block).await.unwrap();
        let err = client
            .page(0, "", 100, 10, snapshot.block)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "graphql");

        let want: BTreeMap<_, _> = [
            (labels("meta", "http_5xx"), 1),
            (labels("meta", "ok"), 1),
            (labels("page", "ok"), 1),
            (labels("page", "graphql"), 1),
        ]
        .into();
        assert_eq!(samples(&snap, GRAPH_REQUEST_SECONDS), want);
    }

    /// A refused connection is `connect`, and the retries are each counted.
    #[tokio::test]
    async fn refused_connections_are_counted_per_attempt() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        // Bind and drop: the port is (almost certainly) closed for the test's duration.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = GraphClient::new(GraphClientConfig {
            secrets: Default::default(),
            max_row_bytes: crate::graph::client::DEFAULT_MAX_ROW_BYTES,
            url: format!("http://{addr}/"),
            api_key: None,
            timeout: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(5),
                max_attempts: 2,
            },
        })
        .unwrap();
        let err = client.snapshot(0).await.unwrap_err();
        assert_eq!(err.kind(), "gave_up");
        let want: BTreeMap<_, _> = [(labels("meta", "connect"), 2)].into();
        assert_eq!(samples(&snap, GRAPH_REQUEST_SECONDS), want);
    }

    /// A body that breaks off after a 200 is `body`: the server was reached, unlike a
    /// refused connection.
    #[tokio::test]
    async fn a_truncated_body_is_body_not_connect() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = conn.read(&mut buf).await;
                // Promises 100 bytes, sends 8, hangs up.
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            content-length: 100\r\n\r\n{\"data\":";
                let _ = conn.write_all(head.as_bytes()).await;
            }
        });
        let client = GraphClient::new(GraphClientConfig {
            secrets: Default::default(),
            max_row_bytes: crate::graph::client::DEFAULT_MAX_ROW_BYTES,
            url: format!("http://{addr}/"),
            api_key: None,
            timeout: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(5),
                max_attempts: 1,
            },
        })
        .unwrap();
        client.snapshot(0).await.unwrap_err();
        let want: BTreeMap<_, _> = [(labels("meta", "body"), 1)].into();
        assert_eq!(samples(&snap, GRAPH_REQUEST_SECONDS), want);
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
            metrics::histogram!(GRAPH_REQUEST_SECONDS).record(0.0);
        });
        let described: Vec<_> = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, help, _)| (key.key().name().to_owned(), unit, help.is_some()))
            .collect();
        assert_eq!(described.len(), 1, "{described:?}");
        for (name, unit, help) in described {
            assert_eq!((unit, help), (Some(metrics::Unit::Seconds), true), "{name}");
        }
    }
}
