//! Server tests: the devnet on 127.0.0.1:0, queried over HTTP with reqwest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::schema::{Served, SubgraphInfo, build_schema};
use super::*;

/// The client's page query, verbatim.
const PAGE_QUERY: &str = include_str!("../../scraper/graphql/page.graphql");
/// The client's meta query, verbatim.
const META_QUERY: &str = include_str!("../../scraper/graphql/meta.graphql");

/// Pages a whole chain in-process with the client's page query: (tokens, seconds).
async fn page_all_in_process(chain: Arc<Chain>, first: usize) -> (usize, f64) {
    let schema = build_schema();
    let info = Arc::new(SubgraphInfo {
        deployment: deployment_id(1),
        prune_before: 0,
        indexing_errors: false,
    });
    let snapshot = chain.head() - 20;
    let (mut block, mut last_id) = (0u64, String::new());
    let mut total = 0;
    let started = Instant::now();
    let mut timing = [0f64; 3];
    loop {
        let vars = serde_json::json!({
            "block": block.to_string(), "lastId": last_id, "end": snapshot.to_string(),
            "first": first, "snapshot": snapshot,
        });
        let req = async_graphql::Request::new(PAGE_QUERY)
            .variables(async_graphql::Variables::from_json(vars))
            .data(Served {
                chain: Arc::clone(&chain),
                info: Arc::clone(&info),
                one_pass: true,
            });
        let t0 = Instant::now();
        let resp = schema.execute(req).await;
        let t1 = Instant::now();
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
        let body = serde_json::to_vec(&resp).unwrap();
        drop(resp);
        let t2 = Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let t3 = Instant::now();
        timing[0] += (t1 - t0).as_secs_f64();
        timing[1] += (t2 - t1).as_secs_f64();
        timing[2] += (t3 - t2).as_secs_f64();
        let mut rows: Vec<&serde_json::Value> =
            v["data"]["rest"].as_array().unwrap().iter().collect();
        rows.extend(v["data"]["next"].as_array().unwrap().iter());
        rows.truncate(first);
        if rows.is_empty() {
            break;
        }
        total += rows.len();
        let last = rows.last().unwrap();
        block = last["blockNumber"].as_str().unwrap().parse().unwrap();
        last_id = last["id"].as_str().unwrap().to_owned();
        if rows.len() < first {
            break;
        }
    }
    eprintln!(
        "execute {:.2}s, serialize+drop {:.2}s, client parse {:.2}s",
        timing[0], timing[1], timing[2]
    );
    (total, started.elapsed().as_secs_f64())
}

/// A devnet on 127.0.0.1:0 for one test.
struct Running {
    /// The GraphQL endpoint.
    subgraph: String,
    /// Scheme, host and port.
    base: String,
    /// Stops the server when sent or dropped.
    stop: Option<oneshot::Sender<()>>,
    /// The server task.
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// A client.
    http: reqwest::Client,
}

impl Running {
    async fn start(config: DevnetConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, async move {
            let _ = stopped.await;
        }));
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        // serve() generates the chain first; wait for it to answer.
        for _ in 0..200 {
            if http.get(format!("{base}/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Running {
            subgraph: format!("{base}{SUBGRAPH_PATH}"),
            base,
            stop: Some(stop),
            task,
            http,
        }
    }

    /// POSTs a query; the status and the parsed body.
    async fn post(&self, query: &str, variables: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(&self.subgraph)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// POSTs a query that must succeed; its `data`.
    async fn data(&self, query: &str) -> Value {
        let (status, body) = self.post(query, json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    /// POSTs a query that must fail; its first error message.
    async fn error(&self, query: &str) -> String {
        let (status, body) = self.post(query, json!({})).await;
        assert_eq!(status, 200, "{body}");
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        self.task.await.unwrap().unwrap();
    }
}

fn config(tokens: usize, seed: u64) -> DevnetConfig {
    DevnetConfig {
        chain: ChainParams {
            tokens,
            seed,
            head_tail: 30,
            web_base: None,
        },
        ..DevnetConfig::default()
    }
}

/// Ids of a list of rows.
fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Pages a snapshot with the client's page query over HTTP: every row, in order.
async fn page_all(devnet: &Running, snapshot: u64, first: usize) -> Vec<Value> {
    let (mut block, mut last_id) = (0u64, String::new());
    let mut out: Vec<Value> = Vec::new();
    loop {
        let vars = json!({
            "block": block.to_string(), "lastId": last_id, "end": snapshot.to_string(),
            "first": first, "snapshot": snapshot,
        });
        let (status, body) = devnet.post(PAGE_QUERY, vars).await;
        assert_eq!(status, 200);
        assert!(body.get("errors").is_none(), "{body}");
        let mut rows = body["data"]["rest"].as_array().unwrap().clone();
        rows.extend(body["data"]["next"].as_array().unwrap().iter().cloned());
        rows.truncate(first);
        let Some(last) = rows.last() else { break };
        block = last["blockNumber"].as_str().unwrap().parse().unwrap();
        last_id = last["id"].as_str().unwrap().to_owned();
        let short = rows.len() < first;
        out.extend(rows);
        if short {
            break;
        }
    }
    out
}

#[tokio::test]
async fn the_page_query_returns_every_token_of_the_snapshot_in_cursor_order() {
    let params = ChainParams {
        tokens: 21_000,
        seed: 3,
        head_tail: 30,
        web_base: None,
    };
    let chain = generate(&params);
    let devnet = Running::start(DevnetConfig {
        chain: params,
        ..DevnetConfig::default()
    })
    .await;
    let snapshot = chain.head() - 20;
    let rows = page_all(&devnet, snapshot, 1000).await;
    let want = chain.tokens_at(snapshot);
    assert_eq!(rows.len(), want.len());
    for (row, t) in rows.iter().zip(want) {
        let contract = &chain.contracts()[usize::from(t.contract)];
        let owner = &chain.owners()[t.owner_at(snapshot) as usize];
        let expected = json!({
            "id": &*t.graph_id,
            "tokenID": t.token_id_decimal(),
            "tokenURI": chain.token_uri(t),
            "mintTime": chain.block_timestamp(t.block).to_string(),
            "blockNumber": t.block.to_string(),
            "blockHash": query::hex0x(&chain.block_hash(t.block)),
            "owner": { "id": owner.id },
            "contract": {
                "id": contract.id,
                "name": contract.name,
                "symbol": contract.symbol,
                "supportsEIP721Metadata": contract.supports_metadata,
            },
        });
        assert_eq!(row, &expected);
    }
    // Burned tokens show the zero address from their burn block on.
    let burned = want
        .iter()
        .find(|t| t.burned_at.is_some_and(|b| b <= snapshot))
        .unwrap();
    let row = rows.iter().find(|r| r["id"] == *burned.graph_id).unwrap();
    assert_eq!(
        row["owner"]["id"],
        "0x0000000000000000000000000000000000000000"
    );
    devnet.stop().await;
}

#[tokio::test]
async fn meta_reports_head_deployment_and_errors() {
    let devnet = Running::start(config(500, 2)).await;
    let chain = generate(&config(500, 2).chain);
    let (status, body) = devnet.post(META_QUERY, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"_meta": {"block": {"number": chain.head()}, "hasIndexingErrors": false}}})
    );
    let data = devnet
        .data("{ _meta(block: {number: 1100}) { block { number hash timestamp } deployment } }")
        .await;
    let meta = &data["_meta"];
    assert_eq!(meta["block"]["number"], 1100);
    assert_eq!(meta["block"]["hash"], query::hex0x(&chain.block_hash(1100)));
    assert_eq!(meta["block"]["timestamp"], chain.block_timestamp(1100));
    let deployment = meta["deployment"].as_str().unwrap();
    assert!(deployment.starts_with("QmDevnet") && deployment.len() == 46);
    devnet.stop().await;
}

#[tokio::test]
async fn filters_order_and_ties_follow_graph_node() {
    let devnet = Running::start(config(3_000, 4)).await;
    let chain = generate(&config(3_000, 4).chain);
    let tokens = chain.tokens();

    // Equality, _in and numeric comparison on BigInt.
    let data = devnet
        .data(r#"{ tokens(first: 10, where: {tokenID_in: ["0", "1", "2"]}, orderBy: tokenID) { id tokenID } }"#)
        .await;
    let got: Vec<&str> = data["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tokenID"].as_str().unwrap())
        .collect();
    assert!(
        got.len() >= 3
            && got
                .windows(2)
                .all(|w| w[0].parse::<u64>().unwrap() <= w[1].parse::<u64>().unwrap())
    );
    let max = U256Str(primitive_types::U256::MAX.to_string());
    let data = devnet
        .data(&format!(
            r#"{{ tokens(where: {{tokenID_gte: "{}"}}) {{ tokenID }} }}"#,
            max.0
        ))
        .await;
    assert_eq!(data["tokens"], json!([{ "tokenID": max.0 }]));

    // contract + blockNumber range, ordered by id, against the chain.
    let c = &chain.contracts()[0];
    let (lo, hi) = (tokens[100].block, tokens[2_000].block);
    let q = format!(
        r#"{{ tokens(first: 1000, where: {{contract: "{}", blockNumber_gte: "{lo}", blockNumber_lt: "{hi}"}}, orderBy: id) {{ id }} }}"#,
        c.id
    );
    let mut want: Vec<String> = tokens
        .iter()
        .filter(|t| t.contract == 0 && t.block >= lo && t.block < hi)
        .map(|t| t.graph_id.to_string())
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(ids(&devnet.data(&q).await["tokens"]), want);

    // or, _not, id comparisons and mintTime.
    let (a, b) = (&tokens[10], &tokens[20]);
    let q = format!(
        r#"{{ tokens(where: {{or: [{{id: "{}"}}, {{id: "{}"}}], id_not: "{}"}}) {{ id }} }}"#,
        a.graph_id, b.graph_id, b.graph_id
    );
    assert_eq!(
        ids(&devnet.data(&q).await["tokens"]),
        vec![a.graph_id.to_string()]
    );
    let t = chain.block_timestamp(a.block);
    let q = format!(r#"{{ tokens(first: 1000, where: {{mintTime: "{t}"}}) {{ id }} }}"#);
    let same_block = tokens.iter().filter(|x| x.block == a.block).count();
    assert_eq!(ids(&devnet.data(&q).await["tokens"]).len(), same_block);
    let uri = chain.token_uri(a);
    let q = format!(
        r#"{{ tokens(first: 1000, where: {{tokenURI: {}, id: "{}"}}) {{ id }} }}"#,
        json!(uri),
        a.graph_id
    );
    assert_eq!(
        ids(&devnet.data(&q).await["tokens"]),
        vec![a.graph_id.to_string()]
    );

    // Default order is id ascending; ties on another field break by id ascending.
    let all_ids = ids(&devnet.data("{ tokens(first: 1000) { id } }").await["tokens"]);
    let mut sorted = all_ids.clone();
    sorted.sort();
    assert_eq!(all_ids, sorted);
    for dir in ["asc", "desc"] {
        let rows = devnet
            .data(&format!("{{ tokens(first: 1000, orderBy: contract, orderDirection: {dir}) {{ id contract {{ id }} }} }}"))
            .await;
        let rows = rows["tokens"].as_array().unwrap().clone();
        for w in rows.windows(2) {
            let (ca, cb) = (
                w[0]["contract"]["id"].as_str().unwrap(),
                w[1]["contract"]["id"].as_str().unwrap(),
            );
            let (ia, ib) = (w[0]["id"].as_str().unwrap(), w[1]["id"].as_str().unwrap());
            if ca == cb {
                assert!(ia < ib, "tie not by id ascending: {ia} {ib}");
            } else {
                assert_eq!(ca < cb, dir == "asc");
            }
        }
    }
    let rows = devnet
        .data(
            "{ tokens(first: 300, orderBy: blockNumber, orderDirection: desc) { id blockNumber } }",
        )
        .await;
    let newest = tokens.last().unwrap().block;
    assert_eq!(rows["tokens"][0]["blockNumber"], newest.to_string());

    // Single entities, contracts and owners.
    let data = devnet
        .data(&format!(r#"{{ token(id: "{}") {{ id owner {{ id numTokens }} contract {{ id numTokens }} }} }}"#, a.graph_id))
        .await;
    assert_eq!(data["token"]["id"], &*a.graph_id);
    assert_eq!(
        devnet.data(r#"{ token(id: "nope") { id } }"#).await["token"],
        Value::Null
    );
    let data = devnet.data("{ tokenContracts(first: 1000, orderBy: numTokens, orderDirection: desc) { id numTokens numOwners name symbol } }").await;
    let counts: Vec<u64> = data["tokenContracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["numTokens"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
    let live: usize = tokens
        .iter()
        .filter(|t| t.owner_at(chain.head()) != 0)
        .count();
    assert_eq!(counts.iter().sum::<u64>() as usize, live);
    let data = devnet.data(r#"{ tokenContracts(where: {supportsEIP721Metadata: false}) { supportsEIP721Metadata } }"#).await;
    assert!(!data["tokenContracts"].as_array().unwrap().is_empty());
    let owner = &chain.owners()[a.owner as usize];
    let data = devnet
        .data(&format!(r#"{{ owner(id: "{}") {{ id numTokens tokens(first: 1000) {{ id owner {{ id }} }} }} }}"#, owner.id))
        .await;
    let held = data["owner"]["tokens"].as_array().unwrap();
    assert_eq!(data["owner"]["numTokens"], held.len().to_string());
    assert!(held.iter().all(|t| t["owner"]["id"] == owner.id.as_str()));
    let data = devnet
        .data("{ owners(first: 5, orderBy: numTokens, orderDirection: desc) { id numTokens } }")
        .await;
    assert_eq!(data["owners"].as_array().unwrap().len(), 5);
    let data = devnet
        .data(r#"{ all(id: "all") { numTokens numTokenContracts numOwners } alls { id } }"#)
        .await;
    assert_eq!(data["all"]["numTokens"], live.to_string());
    assert_eq!(data["alls"], json!([{ "id": "all" }]));
    devnet.stop().await;
}

/// A uint256 as a decimal string.
struct U256Str(String);

#[tokio::test]
async fn first_and_skip_caps_answer_graph_nodes_messages() {
    let devnet = Running::start(config(200, 1)).await;
    assert_eq!(
        devnet.error("{ tokens(first: 2000) { id } }").await,
        "The `first` argument must be between 0 and 1000, but is 2000"
    );
    assert_eq!(
        devnet.error("{ tokens(skip: 6000) { id } }").await,
        "The `skip` argument must be between 0 and 5000, but is 6000"
    );
    assert_eq!(
        devnet.error("{ owners(first: 1001) { id } }").await,
        "The `first` argument must be between 0 and 1000, but is 1001"
    );
    let data = devnet
        .data("{ tokens(first: 0) { id } a: tokens { id } b: tokens(skip: 5000) { id } }")
        .await;
    assert_eq!(data["tokens"], json!([]));
    assert_eq!(data["a"].as_array().unwrap().len(), 100);
    assert_eq!(data["b"], json!([]));
    devnet.stop().await;
}

#[tokio::test]
async fn a_query_with_one_failing_field_answers_errors_and_no_data_like_graph_node() {
    let devnet = Running::start(config(2_000, 3)).await;
    let head = devnet.data("{ _meta { block { number } } }").await["_meta"]["block"]["number"]
        .as_u64()
        .unwrap();
    // graph-client's auto-pagination sends one request with an alias per 1,000 rows; an
    // alias past the skip cap fails the whole request on graph-node, not only itself.
    let cases = [
        (
            "{ a: tokens(first: 2) { id } b: tokens(first: 2, skip: 6000) { id } }".to_owned(),
            "The `skip` argument must be between 0 and 5000, but is 6000".to_owned(),
        ),
        (
            format!(
                "{{ tokens(first: 1) {{ id }} _meta(block: {{ number: {} }}) {{ deployment }} }}",
                head + 1
            ),
            format!("has only indexed up to block number {head}"),
        ),
    ];
    for (query, message) in cases {
        let (status, body) = devnet.post(&query, json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("data").is_none(), "{query}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{body}");
        let got = errors[0]["message"].as_str().unwrap();
        assert!(got.contains(&message), "{query}: {got}");
    }
    // A query without errors still answers its data, and only its data.
    let (_, body) = devnet
        .post(
            "{ a: tokens(first: 2) { id } b: tokens(first: 2, skip: 5000) { id } }",
            json!({}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["a"].as_array().unwrap().len(), 2);
    devnet.stop().await;
}

#[tokio::test]
async fn block_argument_travels_in_time_and_refuses_unknown_blocks() {
    let mut cfg = config(2_000, 6);
    cfg.prune_before = 1_005;
    let chain = generate(&cfg.chain);
    let devnet = Running::start(cfg).await;
    let head = chain.head();
    let deployment = deployment_id(6);

    let burned = chain
        .tokens()
        .iter()
        .find(|t| t.burned_at.is_some())
        .unwrap();
    let at = burned.burned_at.unwrap();
    let q = |block: u64| {
        format!(
            r#"{{ token(id: "{}", block: {{number: {block}}}) {{ owner {{ id }} }} }}"#,
            burned.graph_id
        )
    };
    let before = devnet.data(&q(at - 1)).await;
    assert_eq!(
        before["token"]["owner"]["id"],
        chain.owners()[burned.owner as usize].id.as_str()
    );
    let after = devnet.data(&q(at)).await;
    assert_eq!(
        after["token"]["owner"]["id"],
        "0x0000000000000000000000000000000000000000"
    );
    let minted_later = chain.tokens().last().unwrap();
    let q = format!(
        r#"{{ token(id: "{}", block: {{number: {}}}) {{ id }} }}"#,
        minted_later.graph_id,
        minted_later.block - 1
    );
    assert_eq!(devnet.data(&q).await["token"], Value::Null);

    let t = chain.tokens()[chain.tokens().len() / 2].block;
    let q = format!(
        "{{ tokens(first: 1000, orderBy: blockNumber, orderDirection: desc, block: {{number: {t}}}) {{ blockNumber }} }}"
    );
    let data = devnet.data(&q).await;
    assert_eq!(data["tokens"][0]["blockNumber"], t.to_string());

    assert_eq!(
        devnet
            .error(&format!(
                "{{ tokens(block: {{number: {}}}) {{ id }} }}",
                head + 100
            ))
            .await,
        format!(
            "Failed to decode `block.number` value: `subgraph {deployment} has only indexed up to block number {head} and data for block number {} is therefore not yet available`",
            head + 100
        )
    );
    assert_eq!(
        devnet
            .error("{ tokens(block: {number: 100}) { id } }")
            .await,
        format!(
            "Failed to decode `block.number` value: `subgraph {deployment} only has data starting at block number 1005 and data for block number 100 is therefore not available`"
        )
    );
    let msg = devnet
        .error(&format!(
            "{{ _meta(block: {{number: {}}}) {{ block {{ number }} }} }}",
            head + 1
        ))
        .await;
    assert!(msg.contains("has only indexed up to block number"), "{msg}");
    let hash = query::hex0x(&chain.block_hash(1_500));
    let data = devnet
        .data(&format!(
            r#"{{ _meta(block: {{hash: "{hash}"}}) {{ block {{ number }} }} }}"#
        ))
        .await;
    assert_eq!(data["_meta"]["block"]["number"], 1_500);
    let data = devnet
        .data("{ _meta(block: {number_gte: 1100}) { block { number } } }")
        .await;
    assert_eq!(data["_meta"]["block"]["number"], head);
    devnet.stop().await;
}

#[tokio::test]
async fn introspection_answers_with_the_subgraph_types() {
    let devnet = Running::start(config(10, 1)).await;
    let data = devnet
        .data(r#"{ __schema { queryType { name } types { name kind } }
                  __type(name: "Query") { fields { name args { name type { name kind ofType { name } } defaultValue } type { name kind ofType { name kind ofType { name kind ofType { name } } } } } } }"#)
        .await;
    let types: HashMap<&str, &str> = data["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["kind"].as_str().unwrap()))
        .collect();
    for (name, kind) in [
        ("Token", "OBJECT"),
        ("TokenContract", "OBJECT"),
        ("Owner", "OBJECT"),
        ("All", "OBJECT"),
        ("_Meta_", "OBJECT"),
        ("_Block_", "OBJECT"),
        ("Block_height", "INPUT_OBJECT"),
        ("Token_filter", "INPUT_OBJECT"),
        ("Token_orderBy", "ENUM"),
        ("OrderDirection", "ENUM"),
        ("_SubgraphErrorPolicy_", "ENUM"),
        ("BigInt", "SCALAR"),
        ("Bytes", "SCALAR"),
        ("TokenContract_filter", "INPUT_OBJECT"),
        ("Owner_filter", "INPUT_OBJECT"),
        ("All_filter", "INPUT_OBJECT"),
        ("TokenContract_orderBy", "ENUM"),
        ("Owner_orderBy", "ENUM"),
        ("All_orderBy", "ENUM"),
    ] {
        assert_eq!(types.get(name).copied(), Some(kind), "{name}");
    }
    let fields = data["__type"]["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    for want in [
        "token",
        "tokens",
        "tokenContract",
        "tokenContracts",
        "owner",
        "owners",
        "all",
        "alls",
        "_meta",
    ] {
        assert!(names.contains(&want), "{want}");
    }
    let tokens = fields.iter().find(|f| f["name"] == "tokens").unwrap();
    let args: HashMap<&str, &Value> = tokens["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a))
        .collect();
    assert_eq!(args["first"]["defaultValue"], "100");
    assert_eq!(args["skip"]["defaultValue"], "0");
    assert_eq!(args["where"]["type"]["name"], "Token_filter");
    assert_eq!(args["block"]["type"]["name"], "Block_height");
    assert_eq!(args["subgraphError"]["defaultValue"], "deny");
    // [Token!]!, as graph-node declares it.
    let ty = &tokens["type"];
    assert_eq!(ty["kind"], "NON_NULL");
    assert_eq!(ty["ofType"]["kind"], "LIST");
    assert_eq!(ty["ofType"]["ofType"]["kind"], "NON_NULL");
    assert_eq!(ty["ofType"]["ofType"]["ofType"]["name"], "Token");

    // The classic full introspection query that tools send.
    let full = r#"query IntrospectionQuery { __schema { queryType { name } mutationType { name } subscriptionType { name }
        types { ...FullType } directives { name description locations args { ...InputValue } } } }
      fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name description args { ...InputValue }
        type { ...TypeRef } isDeprecated deprecationReason } inputFields { ...InputValue } interfaces { ...TypeRef }
        enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
      fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
      fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }"#;
    let data = devnet.data(full).await;
    let filter = data["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Token_filter")
        .unwrap();
    let inputs: Vec<&str> = filter["inputFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for want in [
        "id_gt",
        "tokenID_in",
        "blockNumber_lte",
        "owner_not_in",
        "tokenURI",
        "and",
        "or",
    ] {
        assert!(inputs.contains(&want), "{want}");
    }
    devnet.stop().await;
}

#[tokio::test]
async fn admin_mine_grows_the_chain_and_the_next_page_finds_the_new_tokens() {
    let devnet = Running::start(config(1_000, 8)).await;
    let mut chain = generate(&config(1_000, 8).chain);
    let head = chain.head();
    let resp = devnet
        .http
        .post(format!("{}/admin/mine", devnet.base))
        .json(&json!({"blocks": 5, "tokens": 25}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mined: Value = resp.json().await.unwrap();
    let want = chain.mine(5, 25);
    assert_eq!(mined, serde_json::to_value(&want).unwrap());
    assert_eq!(mined["head"], head + 5);
    let meta = devnet.data("{ _meta { block { number } } }").await;
    assert_eq!(meta["_meta"]["block"]["number"], head + 5);
    let rows = page_all(&devnet, head + 5, 1000).await;
    let got: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &want.ids {
        assert!(got.contains(id));
    }
    let all: Vec<String> = chain
        .tokens()
        .iter()
        .map(|t| t.graph_id.to_string())
        .collect();
    assert_eq!(got, all);
    let bad = devnet
        .http
        .post(format!("{}/admin/mine", devnet.base))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let health: Value = devnet
        .http
        .get(format!("{}/health", devnet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["head"], head + 5);
    devnet.stop().await;
}

#[tokio::test]
async fn faults_occur_at_their_rates_on_graphql_only() {
    let mut cfg = config(300, 1);
    cfg.faults = FaultConfig {
        error_rate: 0.1,
        rate_limit_rate: 0.1,
        timeout_rate: 0.1,
        timeout_hold: Duration::from_millis(30),
        truncate_rate: 0.1,
        malformed_rate: 0.1,
        graphql_error_rate: 0.1,
        indexing_error_rate: 0.1,
        seed: 77,
        ..FaultConfig::default()
    };
    let devnet = Running::start(cfg).await;
    let query = "{ tokens(first: 10) { id } }";
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let n = 700;
    for _ in 0..n {
        let resp = devnet
            .http
            .post(&devnet.subgraph)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.bytes().await.unwrap();
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let kind = match (status, &json) {
            (500 | 502 | 503, _) => "error",
            (429, _) => {
                assert_eq!(retry_after.as_deref(), Some("1"));
                "rate_limit"
            }
            (504, _) => "timeout",
            (200, None) if body.starts_with(b"{") => "truncated",
            (200, None) => "malformed",
            (200, Some(v)) => match v["errors"][0]["message"].as_str() {
                None => {
                    assert_eq!(v["data"]["tokens"].as_array().unwrap().len(), 10);
                    "ok"
                }
                Some("indexing_error") => {
                    assert_eq!(v["data"]["tokens"].as_array().unwrap().len(), 5);
                    "indexing"
                }
                Some(m) => {
                    assert!(faults::TRANSIENT_GRAPHQL_ERRORS.contains(&m), "{m}");
                    assert!(v.get("data").is_none());
                    "graphql"
                }
            },
            other => panic!("unexpected {other:?}"),
        };
        *counts.entry(kind).or_default() += 1;
    }
    for kind in [
        "error",
        "rate_limit",
        "timeout",
        "truncated",
        "malformed",
        "graphql",
        "indexing",
    ] {
        let c = counts.get(kind).copied().unwrap_or(0);
        assert!((35..=110).contains(&c), "{kind}: {c} of {n} ({counts:?})");
    }
    let ok = counts.get("ok").copied().unwrap_or(0);
    assert!((150..=270).contains(&ok), "ok: {ok}");
    // The devnet's own count of what it injected is what the client met.
    let stats: FaultCounts = devnet
        .http
        .get(format!("{}/admin/subgraph/stats", devnet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counted = |prefix: &str| -> usize {
        stats
            .faults
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, n)| *n as usize)
            .sum()
    };
    assert_eq!(stats.requests, n as u64);
    for (kind, prefix) in [
        ("error", "http_5"),
        ("rate_limit", "http_429"),
        ("timeout", "timeout"),
        ("truncated", "truncated"),
        ("malformed", "malformed"),
        ("graphql", "graphql: "),
        ("indexing", "indexing_error"),
    ] {
        let seen = counts.get(kind).copied().unwrap_or(0);
        assert_eq!(counted(prefix), seen, "{kind}: {stats:?}");
    }

    // Admin and health are never faulted.
    for _ in 0..30 {
        let r = devnet
            .http
            .post(format!("{}/admin/mine", devnet.base))
            .json(&json!({"blocks": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = devnet
            .http
            .get(format!("{}/health", devnet.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    devnet.stop().await;
}

#[tokio::test]
async fn gateway_and_cluster_timeouts_hold_then_answer_504_and_are_counted() {
    let hold = Duration::from_millis(300);
    let mut config = DevnetConfig {
        chain: ChainParams {
            tokens: 50,
            seed: 1,
            ..ChainParams::default()
        },
        ..DevnetConfig::default()
    };
    config.gateway.timeout_rate = 1.0;
    config.gateway.timeout_hold = hold;
    config.cluster.timeout_rate = 1.0;
    config.cluster.timeout_hold = hold;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = Listeners::bind(loopback, loopback, loopback).await.unwrap();
    let addrs = listeners.addrs().unwrap();
    config.chain.web_base = Some(web_base(addrs.gateway));
    let live = Arc::new(live_chain(config.chain.clone()).await.unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_all(listeners, live, config, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let main = format!("http://{}", addrs.main);
    for _ in 0..200 {
        if http.get(format!("{main}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for url in [
        format!("http://{}/ipfs/bafkqaaa/1.json", addrs.gateway),
        format!("http://{}/id", addrs.cluster),
    ] {
        let started = Instant::now();
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 504, "{url}");
        assert!(started.elapsed() >= hold, "{url} answered before the hold");
    }
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("{main}{path}");
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let gateway = get("/admin/gateway/stats").await;
    assert_eq!(gateway, json!({"requests": 1, "faults": {"timeout": 1}}));
    let cluster = get("/admin/cluster/stats").await;
    assert_eq!(cluster["timeouts"], 1, "{cluster}");
    assert_eq!(cluster["faults"], 0, "{cluster}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn latency_delays_graphql_answers() {
    let mut cfg = config(10, 1);
    cfg.faults.latency = Duration::from_millis(150);
    let devnet = Running::start(cfg).await;
    let started = Instant::now();
    devnet.data("{ _meta { block { number } } }").await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    devnet.stop().await;
}

#[tokio::test]
async fn a_held_request_is_released_at_shutdown() {
    let mut cfg = config(10, 1);
    cfg.faults.timeout_rate = 1.0;
    cfg.faults.timeout_hold = Duration::from_secs(3600);
    let devnet = Running::start(cfg).await;
    let http = devnet.http.clone();
    let url = devnet.subgraph.clone();
    let held = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"query": "{ _meta { deployment } }"}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    devnet.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let resp = held.await.unwrap().unwrap();
    assert_eq!(resp.status(), 504);
}

#[tokio::test]
async fn indexing_errors_show_in_meta_and_deny_refuses() {
    let mut cfg = config(50, 1);
    cfg.indexing_errors = true;
    let devnet = Running::start(cfg).await;
    let meta = devnet.data("{ _meta { hasIndexingErrors } }").await;
    assert_eq!(meta["_meta"]["hasIndexingErrors"], true);
    assert_eq!(devnet.error("{ tokens { id } }").await, "indexing_error");
    let data = devnet
        .data("{ tokens(first: 3, subgraphError: allow) { id } }")
        .await;
    assert_eq!(data["tokens"].as_array().unwrap().len(), 3);
    devnet.stop().await;
}

#[tokio::test]
async fn get_with_a_query_string_runs_the_query() {
    let devnet = Running::start(config(50, 1)).await;
    let resp = devnet
        .http
        .get(&devnet.subgraph)
        .query(&[
            ("query", "query Q($n: Int!) { tokens(first: $n) { id } }"),
            ("variables", r#"{"n": 2}"#),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["tokens"].as_array().unwrap().len(), 2);
    let page = devnet.http.get(&devnet.subgraph).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("<html"));
    devnet.stop().await;
}

/// Runs a query in-process, with or without one-pass rendering.
async fn execute_in_process(chain: &Arc<Chain>, query: &str, vars: Value, one_pass: bool) -> Value {
    let info = Arc::new(SubgraphInfo {
        deployment: deployment_id(1),
        prune_before: 0,
        indexing_errors: false,
    });
    let req = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(vars))
        .data(Served {
            chain: Arc::clone(chain),
            info,
            one_pass,
        });
    serde_json::to_value(build_schema().execute(req).await).unwrap()
}

#[tokio::test]
async fn one_pass_rendering_matches_async_graphqls_own() {
    let chain = Arc::new(generate(&ChainParams {
        tokens: 3_000,
        seed: 2,
        head_tail: 30,
        web_base: None,
    }));
    let snapshot = chain.head() - 20;
    let page_vars = json!({"block": "0", "lastId": "", "end": snapshot.to_string(), "first": 1000, "snapshot": snapshot});
    let owner = &chain.owners()[chain.tokens()[0].owner as usize].id;
    let cases = [
        (PAGE_QUERY.to_owned(), page_vars),
        (
            r#"query { tokens(first: 50, orderBy: tokenURI) { __typename x: id id ...A ... on Token { contract { symbol } }
                 contract { id __typename } owner { __typename } }
               w: tokens(first: 5, orderDirection: desc) { tokenID blockHash } }
               fragment A on Token { tokenID contract { name doAllAddressesOwnTheirIdByDefault } owner { id } }"#
                .to_owned(),
            json!({}),
        ),
        (
            r#"query($skip: Boolean!) { tokens(first: 20) { id tokenURI @skip(if: $skip) ... @include(if: $skip) { mintTime } } }"#.to_owned(),
            json!({"skip": true}),
        ),
        (
            format!(r#"{{ owner(id: "{owner}") {{ tokens(first: 20) {{ id contract {{ tokens(first: 2) {{ id }} numTokens }} }} }} tokenContracts(first: 2) {{ tokens(first: 3) {{ id owner {{ numTokens }} }} }} }}"#),
            json!({}),
        ),
    ];
    for (query, vars) in cases {
        let fast = execute_in_process(&chain, &query, vars.clone(), true).await;
        let slow = execute_in_process(&chain, &query, vars, false).await;
        assert!(fast.get("errors").is_none(), "{fast}");
        assert_eq!(
            serde_json::to_string(&fast).unwrap(),
            serde_json::to_string(&slow).unwrap(),
            "{query}"
        );
    }
}

#[test]
fn args_become_a_checked_config() {
    let args = DevnetArgs {
        error_rate: 0.2,
        latency_ms: 5,
        ..DevnetArgs::default()
    };
    let config = args.config().unwrap();
    assert_eq!(config.faults.error_rate, 0.2);
    assert_eq!(config.faults.latency, Duration::from_millis(5));
    assert_eq!(config.chain, ChainParams::default());
    let bad = DevnetArgs {
        timeout_rate: 1.5,
        ..DevnetArgs::default()
    };
    assert_eq!(
        bad.config().unwrap_err().to_string(),
        "--timeout-rate must be between 0 and 1, but is 1.5"
    );
    let over = DevnetArgs {
        error_rate: 0.6,
        malformed_rate: 0.6,
        ..DevnetArgs::default()
    };
    assert!(matches!(
        over.config(),
        Err(DevnetError::RatesOverOne { .. })
    ));
}

#[test]
fn clap_parses_the_flags() {
    use clap::Parser;
    /// A command line with only the devnet's flags.
    #[derive(clap::Parser)]
    struct Cli {
        /// The flags.
        #[command(flatten)]
        devnet: DevnetArgs,
    }
    let cli = Cli::try_parse_from([
        "nifty",
        "--tokens",
        "5",
        "--seed",
        "2",
        "--prune-before",
        "10",
        "--error-rate",
        "0.1",
        "--indexing-errors",
        "--timeout-hold-ms",
        "10",
        "--listen",
        "127.0.0.1:9999",
    ])
    .unwrap();
    assert_eq!(cli.devnet.tokens, 5);
    assert_eq!(cli.devnet.prune_before, 10);
    assert!(cli.devnet.indexing_errors);
    let defaults = Cli::try_parse_from(["nifty"]).unwrap().devnet;
    assert_eq!(defaults.tokens, 10_000);
    assert_eq!(defaults.head_tail, 30);
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:0");
    assert_eq!(defaults.timeout_hold_ms, 30_000);
}

#[test]
fn cluster_and_gateway_flags_become_a_checked_config() {
    use clap::Parser;
    /// A command line with only the devnet's flags.
    #[derive(clap::Parser)]
    struct Cli {
        /// The flags.
        #[command(flatten)]
        devnet: DevnetArgs,
    }
    let parse = |args: &[&str]| {
        let mut all = vec!["nifty"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().devnet
    };
    let args = parse(&[
        "--cluster-listen",
        "127.0.0.1:9094",
        "--gateway-listen",
        "127.0.0.1:8080",
        "--cluster-peers",
        "2",
        "--cluster-queue-ms",
        "5",
        "--cluster-pin-ms",
        "7",
        "--cluster-error-rate",
        "0.5",
        "--cluster-fault-rate",
        "0.1",
        "--cluster-stream-error-rate",
        "0.2",
        "--cluster-timeout-rate",
        "0.05",
        "--cluster-timeout-hold-ms",
        "700",
        "--cluster-latency-ms",
        "3",
        "--cluster-basic-auth",
        "u:p",
        "--cluster-bearer",
        "tok",
        "--gateway-latency-ms",
        "4",
        "--gateway-error-rate",
        "0.3",
        "--gateway-timeout-rate",
        "0.04",
        "--gateway-timeout-hold-ms",
        "600",
        "--gateway-slow-ms",
        "900",
    ]);
    assert_eq!(args.cluster_listen.port(), 9094);
    assert_eq!(args.gateway_listen.port(), 8080);
    let config = args.config().unwrap();
    assert_eq!(
        config.cluster,
        ClusterConfig {
            peers: 2,
            queue: Duration::from_millis(5),
            pin: Duration::from_millis(7),
            error_rate: 0.5,
            fault_rate: 0.1,
            stream_error_rate: 0.2,
            timeout_rate: 0.05,
            timeout_hold: Duration::from_millis(700),
            latency: Duration::from_millis(3),
            basic_auth: Some(Credential::new("u:p")),
            bearer: Some(Credential::new("tok")),
            seed: 0,
        }
    );
    assert_eq!(
        config.gateway,
        GatewayConfig {
            latency: Duration::from_millis(4),
            error_rate: 0.3,
            timeout_rate: 0.04,
            timeout_hold: Duration::from_millis(600),
            slow: Duration::from_millis(900),
            seed: 0,
        }
    );
    assert!(!format!("{config:?}").contains("tok\""));
    let defaults = parse(&[]).config().unwrap();
    assert_eq!(defaults.cluster, ClusterConfig::default());
    assert_eq!(defaults.gateway, GatewayConfig::default());
    assert_eq!(defaults.chain.web_base, None);
    for (flags, message) in [
        (
            &["--cluster-peers", "0"][..],
            "--cluster-peers must be between 1 and 8, but is 0",
        ),
        (
            &["--cluster-error-rate", "2"][..],
            "--cluster-error-rate must be between 0 and 1, but is 2",
        ),
        (
            &["--gateway-error-rate=-0.5"][..],
            "--gateway-error-rate must be between 0 and 1, but is -0.5",
        ),
        (
            &["--gateway-timeout-rate", "1.5"][..],
            "--gateway-timeout-rate must be between 0 and 1, but is 1.5",
        ),
        (
            &["--cluster-timeout-rate", "2"][..],
            "--cluster-timeout-rate must be between 0 and 1, but is 2",
        ),
        (
            &["--cluster-basic-auth", "nocolon"][..],
            "--cluster-basic-auth must be USER:PASS",
        ),
    ] {
        assert_eq!(parse(flags).config().unwrap_err().to_string(), message);
    }
}

#[test]
fn the_ready_line_is_one_json_object() {
    let addrs = DevnetAddrs {
        main: "127.0.0.1:4567".parse().unwrap(),
        cluster: "0.0.0.0:4568".parse().unwrap(),
        gateway: "127.0.0.1:4569".parse().unwrap(),
    };
    let params = ChainParams {
        tokens: 7,
        seed: 3,
        head_tail: 30,
        web_base: Some(web_base(addrs.gateway)),
    };
    let line = ready_line(addrs, &params);
    assert_eq!(
        line,
        r#"{"subgraph": "http://127.0.0.1:4567/subgraphs/name/nifty/erc721", "admin": "http://127.0.0.1:4567/admin", "cluster": "http://127.0.0.1:4568", "gateway": "http://127.0.0.1:4569", "arweave": "http://127.0.0.1:4569/ar", "web": "http://127.0.0.1:4569/web", "chain": {"head_tail":30,"seed":3,"tokens":7,"web_base":"http://127.0.0.1:4569/web"}}"#
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["web"], v["chain"]["web_base"]);
    assert_eq!(deployment_id(1), deployment_id(1));
    assert_ne!(deployment_id(1), deployment_id(2));
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark: cargo test --release -p nifty --lib devnet::tests::bench -- --ignored --nocapture"]
async fn bench_page_query_in_process() {
    let t = Instant::now();
    let chain = Arc::new(generate(&ChainParams {
        tokens: 1_000_000,
        seed: 1,
        head_tail: 30,
        web_base: None,
    }));
    eprintln!(
        "generated {} tokens in {:?}",
        chain.tokens().len(),
        t.elapsed()
    );
    let (n, secs) = page_all_in_process(chain, 1000).await;
    eprintln!(
        "in-process: {n} tokens in {secs:.2}s = {:.0} tokens/s",
        n as f64 / secs
    );
}

#[test]
#[ignore = "benchmark: cargo test --release -p nifty --lib devnet::tests::bench -- --ignored --nocapture"]
fn bench_page_query_over_http() {
    let chain = generate(&ChainParams {
        tokens: 1_000_000,
        seed: 1,
        head_tail: 30,
        web_base: None,
    });
    let snapshot = chain.head() - 20;
    let want = chain.count_at(snapshot);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    // The server gets one thread: one core.
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve_chain(listener, chain, DevnetConfig::default(), async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let devnet = Running {
            subgraph: format!("http://{addr}{SUBGRAPH_PATH}"),
            base: format!("http://{addr}"),
            stop: Some(stop),
            task: tokio::spawn(async { Ok(()) }),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        let total = page_lean(&devnet, snapshot, 1000).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(total, want);
        eprintln!(
            "over HTTP, one client, pages of 1000: {total} tokens in {secs:.2}s = {:.0} tokens/s",
            total as f64 / secs
        );
        devnet.stop().await;
    });
    server.join().unwrap();
}

/// The fields of a row the cursor needs.
#[derive(serde::Deserialize)]
struct CursorRow {
    /// Graph id.
    id: String,
    /// Mint block, decimal.
    #[serde(rename = "blockNumber")]
    block_number: String,
}

/// The two lists of a page, parsed only as far as the cursor needs.
#[derive(serde::Deserialize)]
struct LeanPage {
    /// `rest`.
    rest: Vec<CursorRow>,
    /// `next`.
    next: Vec<CursorRow>,
}

/// A page response, parsed lean.
#[derive(serde::Deserialize)]
struct LeanResponse {
    /// The page.
    data: LeanPage,
}

/// Pages a snapshot counting rows, with a client that parses only the cursor fields.
async fn page_lean(devnet: &Running, snapshot: u64, first: usize) -> usize {
    let (mut block, mut last_id) = (0u64, String::new());
    let mut total = 0;
    loop {
        let vars = json!({
            "block": block.to_string(), "lastId": last_id, "end": snapshot.to_string(),
            "first": first, "snapshot": snapshot,
        });
        let body = devnet
            .http
            .post(&devnet.subgraph)
            .json(&json!({ "query": PAGE_QUERY, "variables": vars }))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let page: LeanResponse = serde_json::from_slice(&body).unwrap();
        let mut rows = page.data.rest;
        rows.extend(page.data.next);
        rows.truncate(first);
        let Some(last) = rows.last() else { break };
        block = last.block_number.parse().unwrap();
        last_id = last.id.clone();
        total += rows.len();
        if rows.len() < first {
            break;
        }
    }
    total
}
