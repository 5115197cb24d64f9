//! Hostile upstreams that echo every configured secret back: the cluster, the Pinning
//! Service and the gateway put the basic-auth password, the bearer token and the gateway
//! URL's key and token in error bodies, JSON error fields, stream-error headers and
//! trailers, NDJSON status lines, PSA failure details and bodies that serde quotes, split
//! by control and invisible characters, percent-encoded, JSON-escaped and base64-encoded.
//! No error (Display or Debug), stored pin record, pass ending or log line may hold a
//! piece of any of them, nor a raw newline from a server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cid::Cid;
use cid::multihash::Multihash;
use nifty_pinner::backend::{
    Auth, Backend, BackendError, ClusterClient, ClusterOptions, PinMeta, PsaClient, PsaOptions,
    RemoteState,
};
use nifty_pinner::fetch::{FetchOptions, Fetcher};
use nifty_pinner::pass::{self, Ending, Limits, PassOptions};
use nifty_scraper::retry::Backoff;
use nifty_state::{
    Address, Cursor, Page, PinStatus, Store, StoreOptions, Token, TokenId, TokenKey,
};
use nifty_upstream::{Secrets, url_secrets};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;
use url::Url;

// ---------------------------------------------------------------------------------------
// The secrets and how servers echo them

const USER: &str = "pinuser";
const PASSWORD: &str = "hunter2!cluster/pw-fedcba98765";
const TOKEN: &str = "psa.token+0123456789/abcdef";
const GATEWAY_KEY: &str = "gw-key-9876543210fedcba";
const GATEWAY_TOKEN: &str = "gw-query-token-13579-abcdef";

/// Every secret, each long enough that a run of [`nifty_upstream::MIN_PIECE_CHARS`] of it
/// is masked wherever it appears.
const SECRETS: [&str; 4] = [PASSWORD, TOKEN, GATEWAY_KEY, GATEWAY_TOKEN];

/// RFC 3986 unreserved characters stay, as percent-encoders in servers leave them.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A gateway URL carrying a key in its path and a token in its query.
fn gateway_url(host: &str) -> String {
    format!("http://{host}/api/{GATEWAY_KEY}/?token={GATEWAY_TOKEN}")
}

/// The set a configuration with these secrets holds (what `Config::secrets` builds).
fn configured(gateway: &str) -> Secrets {
    Secrets::new([
        PASSWORD.to_owned(),
        format!("{USER}:{PASSWORD}"),
        TOKEN.to_owned(),
    ])
    .with(url_secrets(gateway, false))
}

fn percent(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn json_escaped(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap()
        .trim_matches('"')
        .replace('/', "\\/")
}

/// `secret` as a server echoes it in a body: split by control and invisible characters,
/// percent-encoded, JSON-escaped, base64 alone and inside the headers it was sent in.
fn body_echoes(secret: &str) -> Vec<String> {
    let (a, b) = secret.split_at(secret.len() / 2);
    vec![
        format!("{a}\n{b}"),
        format!("{a}\r\n{b}"),
        format!("{a}\u{1b}{b}"),
        format!("{a}\u{200b}{b}"),
        secret.to_owned(),
        percent(secret),
        json_escaped(secret),
        STANDARD.encode(secret),
        STANDARD.encode(format!("{USER}:{secret}")),
        STANDARD.encode(format!("Bearer {secret}")),
    ]
}

/// `secret` as it can travel in a header value (no CR, LF or other control bytes but
/// tab; any UTF-8).
fn header_echoes(secret: &str) -> Vec<String> {
    let (a, b) = secret.split_at(secret.len() / 2);
    vec![
        format!("{a}\t{b}"),
        format!("{a}\u{200b}{b}"),
        format!("{a}\u{202e}{b}"),
        percent(secret),
        STANDARD.encode(format!("{USER}:{secret}")),
        STANDARD.encode(format!("Bearer {secret}")),
    ]
}

/// Text echoing every secret in every body form, with a forged log line in it.
fn hostile() -> String {
    let mut parts = vec!["bad credentials".to_owned()];
    for s in SECRETS {
        parts.extend(body_echoes(s));
    }
    parts.push("\nERROR forged log line".into());
    parts.join(" | ")
}

/// Text echoing every secret in every header form.
fn hostile_header() -> String {
    let mut parts = vec!["peer error".to_owned()];
    for s in SECRETS {
        parts.extend(header_echoes(s));
    }
    parts.join(" | ")
}

/// The characters of a base64 encoding of `secret` that depend only on it, wherever it
/// sits in the encoded text.
fn base64_cores(secret: &str) -> Vec<String> {
    (0..3usize)
        .map(|lead| {
            let mut bytes = vec![b'x'; lead];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = STANDARD.encode(&bytes);
            let from = (8 * lead).div_ceil(6);
            let to = 8 * (lead + secret.len()) / 6;
            encoded[from..to].to_owned()
        })
        .collect()
}

/// Every run of [`nifty_upstream::MIN_PIECE_CHARS`] characters of every rendering of
/// every secret.
fn pieces() -> Vec<String> {
    let n = nifty_upstream::MIN_PIECE_CHARS;
    let mut out = vec![];
    for s in SECRETS {
        let mut forms = vec![s.to_owned(), percent(s), json_escaped(s)];
        forms.extend(base64_cores(s));
        for f in forms {
            let chars: Vec<char> = f.chars().collect();
            out.extend(chars.windows(n).map(|w| w.iter().collect::<String>()));
        }
    }
    out
}

/// Fails when `text` holds a piece of a secret or a character a server could end or hide
/// a line with.
fn assert_clean(what: &str, text: &str) {
    for c in ['\n', '\r', '\u{1b}', '\u{200b}', '\u{202e}', '\t'] {
        assert!(
            !text.contains(c),
            "{what}: {c:?} from the server in {text:?}"
        );
    }
    for piece in pieces() {
        assert!(
            !text.contains(&piece),
            "{what}: the secret piece {piece:?} in {text:?}"
        );
    }
}

fn assert_error_clean(what: &str, e: &BackendError) {
    assert_clean(&format!("{what} (Display)"), &e.to_string());
    assert_clean(&format!("{what} (Debug)"), &format!("{e:?}"));
}

// ---------------------------------------------------------------------------------------
// Logs

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Captures this thread's log events (tests run on a current-thread runtime, so the
    /// clients' events are on it) until the guard drops.
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    /// Every line is one event (it starts with its level) and holds no secret.
    fn assert_clean(&self, what: &str) {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        assert!(!text.is_empty(), "{what}: nothing was logged");
        for line in text.lines() {
            let level = line.trim_start().split(' ').next().unwrap_or_default();
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
                "{what}: a line that is not an event (forged?): {line:?}"
            );
            assert_clean(&format!("{what}: log line"), line);
        }
    }
}

// ---------------------------------------------------------------------------------------
// A scripted server

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    trailer: Option<String>,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        trailer: None,
    }
}

type Script = Box<dyn Fn(&Method, &Uri) -> Answer + Send + Sync>;

/// A response body that sends its data, then trailers, as a Go cluster peer does.
struct WithTrailers {
    frames: VecDeque<http_body::Frame<Bytes>>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.frames.pop_front().map(Ok))
    }
}

async fn handle(State(script): State<Arc<Script>>, method: Method, uri: Uri) -> Response {
    let a = script(&method, &uri);
    let mut r = match a.trailer {
        Some(t) => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-stream-error", HeaderValue::from_str(&t).unwrap());
            let body = WithTrailers {
                frames: VecDeque::from([
                    http_body::Frame::data(Bytes::from(a.body)),
                    http_body::Frame::trailers(trailers),
                ]),
            };
            let mut r = Response::new(axum::body::Body::new(body));
            r.headers_mut()
                .insert("trailer", HeaderValue::from_static("X-Stream-Error"));
            r
        }
        None => a.body.into_response(),
    };
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap();
    for (k, v) in a.headers {
        r.headers_mut()
            .append(k, HeaderValue::from_str(&v).unwrap());
    }
    r
}

/// Serves `script` on 127.0.0.1:0 and returns its base URL.
async fn serve(script: Script) -> Url {
    let app = Router::new().fallback(handle).with_state(Arc::new(script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Url::parse(&format!("http://{addr}/")).unwrap()
}

fn always(a: Answer) -> Script {
    Box::new(move |_, _| a.clone())
}

// ---------------------------------------------------------------------------------------
// Clients

/// A distinct CIDv1 (raw, sha2-256) per `i`.
fn cid(i: u32) -> Cid {
    let mut digest = [3u8; 32];
    digest[..4].copy_from_slice(&i.to_be_bytes());
    Cid::new_v1(0x55, Multihash::<64>::wrap(0x12, &digest).unwrap())
}

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_attempts: 2,
    }
}

/// A cluster client with basic auth and the whole configured set of secrets.
fn cluster(url: Url) -> ClusterClient {
    ClusterClient::new(ClusterOptions {
        auth: Auth::Basic {
            user: USER.into(),
            password: SecretString::from(PASSWORD.to_owned()),
        },
        timeout: Duration::from_secs(5),
        backoff: backoff(),
        secrets: configured(&gateway_url("gateway.example")),
        ..ClusterOptions::new(url)
    })
    .unwrap()
}

/// A PSA client with its bearer token and the whole configured set of secrets.
fn psa(url: Url) -> PsaClient {
    PsaClient::new(PsaOptions {
        timeout: Duration::from_secs(5),
        backoff: backoff(),
        secrets: configured(&gateway_url("gateway.example")),
        ..PsaOptions::new(url, SecretString::from(TOKEN.to_owned()))
    })
    .unwrap()
}

/// A fetcher whose gateway is `gateway` (a key in its path, a token in its query).
fn fetcher(gateway: &str) -> Fetcher {
    let mut opts = FetchOptions::new(
        Url::parse(gateway).unwrap(),
        Url::parse("http://127.0.0.1:9/ar").unwrap(),
    );
    opts.timeout = Duration::from_secs(5);
    opts.secrets = configured(gateway);
    Fetcher::new(opts).unwrap()
}

fn meta() -> PinMeta {
    PinMeta {
        name: "n".into(),
        meta: vec![],
    }
}

/// A GlobalPinInfo line whose only peer failed with `error`, its name and id `peer`.
fn failed_line(c: &Cid, peer: &str, error: &str) -> String {
    serde_json::json!({
        "cid": c.to_string(),
        "peer_map": {
            peer: {"peername": peer, "status": "pin_error", "error": error},
        },
    })
    .to_string()
}

fn pin_status(c: &str, status: &str, requestid: &str, details: &str) -> serde_json::Value {
    serde_json::json!({
        "requestid": requestid,
        "status": status,
        "created": "2024-05-01T00:00:00Z",
        "pin": {"cid": c},
        "delegates": [],
        "info": {"status_details": details},
    })
}

// ---------------------------------------------------------------------------------------
// Cluster

#[tokio::test]
async fn cluster_error_bodies_and_their_json_fields_never_show_a_secret() {
    let h = hostile();
    let plain = Answer {
        headers: vec![("content-type", "text/plain".into())],
        ..answer(400, &h)
    };
    let json = answer(
        422,
        &serde_json::json!({"code": h, "message": h}).to_string(),
    );
    let psa_shape = answer(
        403,
        &serde_json::json!({"error": {"reason": h, "details": h}}).to_string(),
    );
    for (what, a) in [("plain", plain), ("json", json), ("psa shape", psa_shape)] {
        let client = cluster(serve(always(a)).await);
        let e = client.pin(&cid(1), &meta()).await.unwrap_err();
        assert!(e.reason().starts_with("http_4"), "{what}: {e}");
        assert_error_clean(what, &e);
        assert!(e.to_string().contains("<redacted>"), "{what}: {e}");
    }
}

#[tokio::test]
async fn cluster_retries_log_nothing_secret() {
    let (logs, _guard) = Logs::capture();
    let client = cluster(serve(always(answer(503, &hostile()))).await);
    let e = client.pin(&cid(1), &meta()).await.unwrap_err();
    assert_eq!(e.reason(), "http_503");
    assert_error_clean("exhausted", &e);
    logs.assert_clean("retries");
}

#[tokio::test]
async fn cluster_stream_errors_in_headers_and_trailers_never_show_a_secret() {
    let line = serde_json::json!({"cid": cid(1).to_string(), "peer_map": {}}).to_string();
    let header = Answer {
        headers: vec![("x-stream-error", hostile_header())],
        ..answer(200, &line)
    };
    let trailer = Answer {
        trailer: Some(hostile_header()),
        ..answer(200, &format!("{line}\n"))
    };
    for (what, a) in [("header", header), ("trailer", trailer)] {
        let e = cluster(serve(always(a)).await)
            .status(&[cid(1)])
            .await
            .unwrap_err();
        assert!(e.reason() == "stream_error", "{what}: {e}");
        assert_error_clean(what, &e);
    }
}

#[tokio::test]
async fn cluster_status_lines_are_server_text() {
    let h = hostile();
    let (a, b) = SECRETS[0].split_at(8);
    let peer = format!("peer-{a}\n{b}");
    let line = failed_line(&cid(1), &peer, &h);
    let client = cluster(serve(always(answer(200, &line))).await);
    let got = client.status(&[cid(1)]).await.unwrap();
    match &got[0].state {
        RemoteState::Failed { error } => {
            assert_clean("peer_map error", error);
            assert!(error.contains("<redacted>"), "{error}");
        }
        s => panic!("{s:?}"),
    }
    // Lines that do not parse are quoted in the error: cleaned too.
    let bad = [
        serde_json::json!({"cid": h, "peer_map": {}}).to_string(),
        format!("{{\"cid\": 7, \"x\": \"{}\"", json_escaped(&h)),
        h.replace('\n', " "),
    ];
    for body in bad {
        let e = cluster(serve(always(answer(200, &body))).await)
            .status(&[cid(1)])
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "decode", "{e}");
        assert_error_clean("bad status line", &e);
    }
}

#[tokio::test]
async fn cluster_answers_serde_quotes_never_show_a_secret() {
    // A JSON string where a Pin object belongs: serde quotes it, escaped, in its message.
    let quoted = serde_json::to_string(&hostile()).unwrap();
    for body in [quoted.clone(), format!("<html>{}</html>", hostile())] {
        let client = cluster(serve(always(answer(200, &body))).await);
        let e = client.pin(&cid(1), &meta()).await.unwrap_err();
        assert_eq!(e.reason(), "decode", "{e}");
        assert_error_clean("pin answer", &e);
        let e = client.recover(&cid(1)).await.unwrap_err();
        assert_eq!(e.reason(), "decode", "{e}");
        assert_error_clean("recover answer", &e);
    }
}

// ---------------------------------------------------------------------------------------
// Pinning Service

#[tokio::test]
async fn psa_errors_failures_and_quoted_bodies_never_show_a_secret() {
    let h = hostile();
    let err = answer(
        401,
        &serde_json::json!({"error": {"reason": h, "details": h}}).to_string(),
    );
    let e = psa(serve(always(err)).await)
        .pin(&cid(1), &meta())
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "http_401");
    assert_error_clean("psa 401", &e);

    let c = cid(2).to_string();
    let failed = serde_json::json!({"count": 1, "results": [pin_status(&c, "failed", &h, &h)]});
    let got = psa(serve(always(answer(200, &failed.to_string()))).await)
        .status(&[cid(2)])
        .await
        .unwrap();
    match &got[0].state {
        RemoteState::Failed { error } => assert_clean("psa failure", error),
        s => panic!("{s:?}"),
    }

    let bodies = [
        serde_json::json!({"count": h, "results": []}).to_string(),
        serde_json::json!({"count": 1, "results": [pin_status(&h, "pinned", "r", "")]}).to_string(),
        format!("<html>{h}</html>"),
    ];
    for body in bodies {
        let e = psa(serve(always(answer(200, &body))).await)
            .status(&[cid(2)])
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "decode", "{e}");
        assert_error_clean("psa listing", &e);
    }
}

#[tokio::test]
async fn psa_unknown_statuses_are_logged_without_secrets() {
    let (logs, _guard) = Logs::capture();
    let h = hostile();
    let c = cid(3).to_string();
    let listing = serde_json::json!({"count": 1, "results": [pin_status(&c, &h, "r", "")]});
    let client = psa(serve(always(answer(200, &listing.to_string()))).await);
    let got = client.status(&[cid(3)]).await.unwrap();
    assert_eq!(got[0].state, RemoteState::Unpinned);
    let accepted = pin_status(&c, &h, "r", "").to_string();
    let client = psa(serve(always(answer(202, &accepted))).await);
    assert_eq!(
        client.pin(&cid(3), &meta()).await.unwrap().state,
        RemoteState::Queued
    );
    logs.assert_clean("unknown statuses");
}

// ---------------------------------------------------------------------------------------
// Through the passes: pin records, pass endings and logs

fn key(id: u64) -> TokenKey {
    TokenKey {
        contract: Address([7; 20]),
        token_id: TokenId(id.into()),
    }
}

/// A store with one token per CID, each with inline metadata naming its CID as image, and
/// analysed (no fetch needed), so each CID has a wanted pin.
async fn store_wanting(cids: &[Cid]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let tokens: Vec<(TokenKey, Token)> = cids
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let k = key(i as u64);
            let uri = format!("data:application/json,{{\"image\":\"ipfs://{c}\"}}");
            (k, Token::scraped("graph", &k, Some(uri), 5))
        })
        .collect();
    store
        .commit_page(&Page {
            cursor_name: "graph",
            cursor: Cursor::default(),
            tokens: &tokens,
            contracts: &[],
        })
        .unwrap();
    let offline = fetcher("http://127.0.0.1:9/");
    let report = pass::analyse(&store, &offline, &PassOptions::default(), &Limits::none())
        .await
        .unwrap();
    assert_eq!(report.handled, cids.len() as u64, "{report:?}");
    (dir, store)
}

fn last_error(store: &Store, c: &Cid) -> String {
    store
        .pin(&c.to_bytes())
        .unwrap()
        .unwrap()
        .last_error
        .unwrap_or_else(|| panic!("{c}: no error stored"))
}

fn opts() -> PassOptions {
    PassOptions {
        retry_base: Duration::ZERO,
        ..PassOptions::default()
    }
}

#[tokio::test]
async fn cluster_pin_records_and_pass_endings_never_hold_a_secret() {
    let (logs, _guard) = Logs::capture();
    let (refused, failing) = (cid(10), cid(11));
    let (_dir, store) = store_wanting(&[refused, failing]).await;
    let h = hostile();
    let script: Script = Box::new(move |method, uri| {
        let path = uri.path();
        if method == Method::POST && path.contains(&refused.to_string()) {
            answer(
                400,
                &serde_json::json!({"code": 400, "message": h}).to_string(),
            )
        } else if method == Method::POST {
            answer(200, r#"{"cid":"x"}"#)
        } else {
            answer(200, &failed_line(&failing, &format!("p\n{h}"), &h))
        }
    });
    let backend = Backend::Cluster(cluster(serve(script).await));
    let pinned = pass::pin(&store, &backend, &opts(), &Limits::none())
        .await
        .unwrap();
    assert_eq!(pinned.handled, 2, "{pinned:?}");
    let refused_error = last_error(&store, &refused);
    assert!(refused_error.starts_with("http_400"), "{refused_error}");
    assert_clean("refused pin's record", &refused_error);

    let followed = pass::follow(&store, &backend, &opts(), &Limits::none())
        .await
        .unwrap();
    assert_eq!(followed.ending, Some(Ending::Drained), "{followed:?}");
    let failing_error = last_error(&store, &failing);
    assert!(failing_error.starts_with("pin_error"), "{failing_error}");
    assert_clean("failed pin's record", &failing_error);

    // A backend that is down ends the pass with its words as the reason: cleaned.
    let down = Backend::Cluster(cluster(serve(always(answer(503, &hostile()))).await));
    let outage = pass::follow(&store, &down, &opts(), &Limits::none())
        .await
        .unwrap();
    match &outage.ending {
        Some(Ending::Outage(why)) => assert_clean("outage", why),
        e => panic!("{e:?}"),
    }
    logs.assert_clean("cluster passes");
}

#[tokio::test]
async fn psa_pin_records_never_hold_a_secret() {
    let c = cid(20);
    let (_dir, store) = store_wanting(&[c]).await;
    let h = hostile();
    let text = c.to_string();
    let script: Script = Box::new(move |method, _| {
        if method == Method::POST {
            answer(202, &pin_status(&text, "queued", "r1", "").to_string())
        } else {
            let listing =
                serde_json::json!({"count": 1, "results": [pin_status(&text, "failed", &h, &h)]});
            answer(200, &listing.to_string())
        }
    });
    let backend = Backend::Psa(psa(serve(script).await));
    pass::pin(&store, &backend, &opts(), &Limits::none())
        .await
        .unwrap();
    pass::follow(&store, &backend, &opts(), &Limits::none())
        .await
        .unwrap();
    let rec = store.pin(&c.to_bytes()).unwrap().unwrap();
    assert_eq!(rec.status, PinStatus::Retrying, "{rec:?}");
    assert_clean("psa failure record", &last_error(&store, &c));
}

// ---------------------------------------------------------------------------------------
// Gateway

#[tokio::test]
async fn gateway_keys_never_reach_fetch_errors_pass_endings_or_logs() {
    let (logs, _guard) = Logs::capture();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    let script: Script = Box::new(move |_, uri| {
        log.lock().unwrap().push(uri.to_string());
        let status = if uri.path().ends_with("/down.json") {
            503
        } else {
            500
        };
        answer(status, &hostile())
    });
    let base = serve(script).await;
    let gateway = gateway_url(&format!(
        "{}:{}",
        base.host_str().unwrap(),
        base.port().unwrap()
    ));
    let f = fetcher(&gateway);
    let broken = nifty_pinner::uri::analyse(&format!("ipfs://{}/broken.json", cid(30)))
        .unwrap()
        .target;
    let e = f.fetch(&broken).await.unwrap_err();
    assert_eq!(e.reason.name(), "http_500", "{e}");
    assert_clean("fetch error (Display)", &e.to_string());
    assert_clean("fetch error (Debug)", &format!("{e:?}"));
    // The key and the token went to the gateway, where they belong.
    let asked = seen.lock().unwrap().clone();
    assert!(
        asked[0].starts_with(&format!("/api/{GATEWAY_KEY}/ipfs/{}/broken.json", cid(30))),
        "{asked:?}"
    );
    assert!(
        asked[0].ends_with(&format!("?token={GATEWAY_TOKEN}")),
        "{asked:?}"
    );

    // A gateway that is down stops the analysis pass with the fetch error as its reason.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let k = key(1);
    let uri = format!("ipfs://{}/down.json", cid(31));
    store
        .commit_page(&Page {
            cursor_name: "graph",
            cursor: Cursor::default(),
            tokens: &[(k, Token::scraped("graph", &k, Some(uri), 5))],
            contracts: &[],
        })
        .unwrap();
    let report = pass::analyse(&store, &f, &PassOptions::default(), &Limits::none())
        .await
        .unwrap();
    match &report.ending {
        Some(Ending::Outage(why)) => assert_clean("gateway outage", why),
        e => panic!("{e:?}"),
    }
    logs.assert_clean("gateway");
}

/// Metadata is data: its text keeps every character, but a secret a hostile document
/// carries (in a `properties` key, which becomes a pin's role) is masked before it is
/// stored, shown or sent to the backend as a pin name.
#[tokio::test]
async fn metadata_text_is_stored_without_secrets() {
    let mut forms: Vec<String> = SECRETS
        .iter()
        .flat_map(|s| [s.to_string(), percent(s), STANDARD.encode(s)])
        .collect();
    forms.sort();
    forms.dedup();
    let mut props = serde_json::Map::new();
    for (i, form) in forms.iter().enumerate() {
        props.insert(
            format!("{form}\nkept"),
            format!("ipfs://{}", cid(100 + i as u32)).into(),
        );
    }
    let doc = serde_json::json!({"properties": props}).to_string();
    let base = serve(always(answer(200, &doc))).await;
    let gateway = gateway_url(&format!(
        "{}:{}",
        base.host_str().unwrap(),
        base.port().unwrap()
    ));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let k = key(1);
    let uri = format!("ipfs://{}/meta.json", cid(99));
    store
        .commit_page(&Page {
            cursor_name: "graph",
            cursor: Cursor::default(),
            tokens: &[(k, Token::scraped("graph", &k, Some(uri), 5))],
            contracts: &[],
        })
        .unwrap();
    pass::analyse(
        &store,
        &fetcher(&gateway),
        &PassOptions::default(),
        &Limits::none(),
    )
    .await
    .unwrap();
    for (i, form) in forms.iter().enumerate() {
        let rec = store.pin(&cid(100 + i as u32).to_bytes()).unwrap().unwrap();
        let (_, role) = rec.first_use.unwrap();
        // A base64 rendering keeps its last character or two, which carry bits of what
        // follows the secret.
        assert!(
            role.starts_with("properties.<redacted>") && role.ends_with("\nkept"),
            "{form:?}: {role:?}"
        );
        for piece in pieces() {
            assert!(!role.contains(&piece), "{piece:?} in {role:?}");
        }
    }
}
