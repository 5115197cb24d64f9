//! A real `anvil` node for the chain-source tests: the test contracts compiled once per test
//! process (solc-js), an anvil process on a free loopback port that is killed when dropped,
//! and async JSON-RPC helpers to deploy, mint, mine, snapshot and read logs.
//!
//! The tools come from `scripts/install-chain-tools.sh` (`make chain-tools`), which puts the
//! anvil binary and solc-js under `.tools/chain`; `NIFTY_ANVIL` names another anvil.
//!
//! Transactions are sent with `eth_sendTransaction` from anvil's unlocked dev accounts (account
//! 0 unless said otherwise), so nothing here signs. Transport failures and malformed answers
//! panic (this is a test harness); JSON-RPC errors come back as [`RpcError`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ethers_core::abi::{Abi, ParamType, Token, decode, encode};
use ethers_core::types::{Address, Bytes, H256, Log, TransactionReceipt, U256};
use ethers_core::utils::{hex, keccak256};
use serde_json::{Value, json};

/// Where Multicall3 lives on nearly every EVM chain; [`Anvil::install_multicall3`] puts our
/// implementation's runtime code there.
pub const MULTICALL3: &str = "0xcA11bde05977b3631167028862bE2a173976CA11";

/// The block gas limit [`Anvil::start`] gives anvil: room for tens of thousands of mints in one
/// block (anvil's own default is 30 M).
pub const GAS_LIMIT: u64 = 10_000_000_000;

/// How many lines of anvil's output [`Anvil::log_tail`] keeps.
const LOG_LINES: usize = 200;

// ---------------------------------------------------------------------------------------------
// Tools and contracts

/// The repository root (the root package's manifest directory).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.tools/chain`, where `scripts/install-chain-tools.sh` installs anvil and solc-js.
pub fn tools_dir() -> PathBuf {
    repo_dir().join(".tools").join("chain")
}

/// The anvil binary: `NIFTY_ANVIL` when set, else the one the install script put in
/// [`tools_dir`].
pub fn anvil_bin() -> PathBuf {
    match std::env::var_os("NIFTY_ANVIL") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => tools_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    }
}

/// The solc-js package directory `tests/chain/compile.js` loads (`NIFTY_SOLCJS` overrides it
/// there and here).
pub fn solcjs_dir() -> PathBuf {
    match std::env::var_os("NIFTY_SOLCJS") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => tools_dir().join("node_modules/solc"),
    }
}

/// `tests/chain`: the contracts, the compile script and the tools' package lock.
pub fn chain_dir() -> PathBuf {
    repo_dir().join("tests").join("chain")
}

/// One compiled contract.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The contract's name.
    pub name: String,
    /// Its ABI as solc wrote it.
    pub abi_json: Value,
    /// The same ABI parsed, for encoding and decoding by function name.
    pub abi: Abi,
    /// Creation code: deploy it followed by the ABI-encoded constructor arguments.
    pub bytecode: Vec<u8>,
    /// Runtime code: what `anvil_setCode` installs.
    pub runtime: Vec<u8>,
}

/// Every contract in `tests/chain/contracts`, by name.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The contracts, by name.
    pub contracts: BTreeMap<String, Artifact>,
}

impl Artifacts {
    /// The contract called `name`; panics naming the ones there are.
    pub fn get(&self, name: &str) -> &Artifact {
        match self.contracts.get(name) {
            Some(artifact) => artifact,
            None => panic!(
                "no contract {name} in tests/chain/contracts (there are: {})",
                self.contracts
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The contracts' names.
    pub fn names(&self) -> Vec<&str> {
        self.contracts.keys().map(String::as_str).collect()
    }
}

/// The test contracts, compiled once per test process.
///
/// The artifacts are cached under `<target>/tmp/chain-contracts/<hash>.json`, keyed by a hash
/// of the Solidity sources, `compile.js` and the tools' package lock, so only the first test
/// process after a change pays for solc-js (about 3 s). Panics when node or solc-js is missing,
/// or with solc's errors when a contract does not compile.
pub fn contracts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(compile_contracts)
}

fn compile_contracts() -> Artifacts {
    let chain = chain_dir();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(chain.join("contracts"))
        .unwrap_or_else(|e| panic!("reading {}: {e}", chain.join("contracts").display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sol"))
        .collect();
    sources.sort();
    let mut keyed = Vec::new();
    for path in sources
        .iter()
        .chain([chain.join("compile.js"), chain.join("package-lock.json")].iter())
    {
        keyed.extend_from_slice(path.file_name().unwrap().as_encoded_bytes());
        keyed.push(0);
        keyed.extend(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        keyed.push(0);
    }
    let key = hex::encode(&keccak256(&keyed)[..12]);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chain-contracts");
    let out = cache.join(format!("{key}.json"));
    if !out.is_file() {
        let solc = solcjs_dir();
        if !solc.join("package.json").is_file() {
            panic!(
                "solc-js not found at {}; run scripts/install-chain-tools.sh (make chain-tools)",
                solc.display()
            );
        }
        std::fs::create_dir_all(&cache).unwrap();
        // compile.js writes to a temporary name and renames, so test processes compiling at
        // the same time each end with a whole file.
        let result = Command::new("node")
            .arg(chain.join("compile.js"))
            .arg(&out)
            .env("NIFTY_SOLCJS", &solc)
            .output();
        let output = match result {
            Ok(output) => output,
            Err(e) => panic!(
                "cannot run node ({e}); the chain tests need Node.js 20+ and \
                 scripts/install-chain-tools.sh (make chain-tools)"
            ),
        };
        if !output.status.success() {
            panic!(
                "compiling tests/chain/contracts failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let json: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
    let contracts = json
        .into_iter()
        .map(|(name, entry)| {
            let abi_json = entry["abi"].clone();
            let abi: Abi = serde_json::from_value(abi_json.clone())
                .unwrap_or_else(|e| panic!("ABI of {name}: {e}"));
            let artifact = Artifact {
                abi_json,
                abi,
                bytecode: unhex(entry["bytecode"].as_str().unwrap()),
                runtime: unhex(entry["deployedBytecode"].as_str().unwrap()),
                name: name.clone(),
            };
            (name, artifact)
        })
        .collect();
    Artifacts { contracts }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC errors and plain calls

/// A JSON-RPC error object, as the node (or a proxy) answered it.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// `error.code`.
    pub code: i64,
    /// `error.message`.
    pub message: String,
    /// `error.data`, when given (revert data for a reverting `eth_call`).
    pub data: Option<Value>,
}

impl RpcError {
    fn from_json(error: &Value) -> RpcError {
        RpcError {
            code: error["code"].as_i64().unwrap_or(0),
            message: error["message"].as_str().unwrap_or_default().to_string(),
            data: error.get("data").cloned().filter(|d| !d.is_null()),
        }
    }

    /// Whether this is an EVM revert (anvil answers code 3, "execution reverted...").
    pub fn is_revert(&self) -> bool {
        self.code == 3 || self.message.contains("revert")
    }

    /// The revert data: `error.data` as bytes (a hex string, or an object's `data` field).
    pub fn revert_data(&self) -> Option<Vec<u8>> {
        let data = self.data.as_ref()?;
        let text = data
            .as_str()
            .or_else(|| data.get("data").and_then(Value::as_str))?;
        hex::decode(text).ok()
    }

    /// The reason string of a `revert("...")` / `require(..., "...")`, decoded from the
    /// `Error(string)` revert data.
    pub fn revert_reason(&self) -> Option<String> {
        decode_revert_reason(&self.revert_data()?)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, " (data: {data})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

/// One JSON-RPC call to `url` with a fresh client: for talking to something other than an
/// [`Anvil`] (a proxy in front of one, say). Panics on transport errors and non-JSON answers.
pub async fn json_rpc(url: &str, method: &str, params: Value) -> Result<Value, RpcError> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} to {url}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} to {url}: HTTP {status}, not JSON ({e}): {text}"));
    outcome(&answer)
}

fn outcome(answer: &Value) -> Result<Value, RpcError> {
    match answer.get("error") {
        Some(error) if !error.is_null() => Err(RpcError::from_json(error)),
        _ => match answer.get("result") {
            Some(result) => Ok(result.clone()),
            None => panic!("JSON-RPC answer with neither result nor error: {answer}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The node

/// A running anvil, killed (and waited for) when dropped.
pub struct Anvil {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The port anvil listens on.
    pub port: u16,
    child: Child,
    client: reqwest::Client,
    accounts: Vec<Address>,
    next_id: AtomicU64,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl Anvil {
    /// anvil on 127.0.0.1 with a free port, a [`GAS_LIMIT`] block gas limit, no request size
    /// limit, automine on and the usual ten funded dev accounts; returns once it answers
    /// `eth_chainId`.
    pub async fn start() -> Anvil {
        Anvil::start_with(&[]).await
    }

    /// Like [`Anvil::start`] with extra anvil arguments (`--block-time 1`, `--chain-id 5`,
    /// `--no-mining`, ...). A default (`--gas-limit`, `--host`, `--port`) the arguments name
    /// is left out in their favour.
    ///
    /// The port: anvil is started with `--port 0` and prints `Listening on 127.0.0.1:<port>`
    /// once bound, which is read from its stdout, so there is no race for a free port.
    pub async fn start_with(args: &[&str]) -> Anvil {
        let bin = anvil_bin();
        if !bin.is_file() {
            panic!(
                "anvil not found at {}; run scripts/install-chain-tools.sh (make chain-tools)",
                bin.display()
            );
        }
        let given = |flag: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut command = Command::new(&bin);
        if !given("--host") {
            command.args(["--host", "127.0.0.1"]);
        }
        if !given("--port") && !given("-p") {
            command.args(["--port", "0"]);
        }
        if !given("--gas-limit") && !given("--disable-block-gas-limit") {
            command.args(["--gas-limit", &GAS_LIMIT.to_string()]);
        }
        if !given("--no-request-size-limit") {
            command.arg("--no-request-size-limit");
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));

        // Two threads read anvil's stdout and stderr to the end (so its pipes never fill),
        // keep the last lines for error messages, and report the listening address.
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (addr_tx, mut addr_rx) = tokio::sync::mpsc::unbounded_channel::<Option<u16>>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(port) = listening_port(&line) {
                        let _ = addr_tx.send(Some(port));
                    }
                    let mut lines = output.lock().unwrap();
                    if lines.len() == LOG_LINES {
                        lines.pop_front();
                    }
                    lines.push_back(line);
                }
                let _ = addr_tx.send(None);
            });
        }
        drop(addr_tx);

        let deadline = Instant::now() + Duration::from_secs(30);
        let mut port = None;
        let mut ended = 0;
        while port.is_none() && ended < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, addr_rx.recv()).await {
                Ok(Some(Some(p))) => port = Some(p),
                Ok(Some(None)) => ended += 1,
                Ok(None) | Err(_) => break,
            }
        }
        let tail = |output: &Arc<Mutex<VecDeque<String>>>| {
            output
                .lock()
                .unwrap()
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        };
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "anvil did not report a listening address within 30 s (exit: {status:?}); output:\n{}",
                tail(&output)
            );
        };

        let mut anvil = Anvil {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            accounts: Vec::new(),
            next_id: AtomicU64::new(1),
            output,
        };
        loop {
            match anvil.try_rpc("eth_chainId", json!([])).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!(
                    "anvil at {} did not answer eth_chainId: {e}; output:\n{}",
                    anvil.url,
                    anvil.log_tail()
                ),
            }
        }
        let accounts = anvil.rpc_ok("eth_accounts", json!([])).await;
        anvil.accounts = serde_json::from_value(accounts).unwrap();
        anvil
    }

    /// The last lines anvil printed (it logs every RPC method it serves).
    pub fn log_tail(&self) -> String {
        let lines = self.output.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// anvil's unlocked, funded dev accounts.
    pub fn accounts(&self) -> &[Address] {
        &self.accounts
    }

    /// Account 0, which deploys and sends by default.
    pub fn sender(&self) -> Address {
        self.accounts[0]
    }

    // --- JSON-RPC ------------------------------------------------------------------------

    async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {text}"))?;
        match outcome(&answer) {
            Ok(result) => Ok(result),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One JSON-RPC call. A JSON-RPC error is returned; a transport failure panics with
    /// anvil's last output.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.post(method, &body).await;
        outcome(&answer)
    }

    /// [`Anvil::rpc`] that panics on a JSON-RPC error.
    pub async fn rpc_ok(&self, method: &str, params: Value) -> Value {
        match self.rpc(method, params.clone()).await {
            Ok(result) => result,
            Err(e) => panic!("{method}({params}) failed: {e}"),
        }
    }

    /// Several calls in one JSON-RPC batch; the outcomes in the order of `calls`.
    pub async fn rpc_batch(&self, calls: Vec<(&str, Value)>) -> Vec<Result<Value, RpcError>> {
        if calls.is_empty() {
            return Vec::new();
        }
        let first = self
            .next_id
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (method, params))| {
                json!({"jsonrpc": "2.0", "id": first + i as u64, "method": method, "params": params})
            })
            .collect();
        let answer = self.post("batch", &Value::Array(body)).await;
        let Value::Array(answers) = answer else {
            panic!(
                "batch of {} calls answered with a non-array: {answer}",
                calls.len()
            );
        };
        let mut by_id: HashMap<u64, Value> = answers
            .into_iter()
            .filter_map(|a| Some((a.get("id")?.as_u64()?, a)))
            .collect();
        (0..calls.len() as u64)
            .map(|i| match by_id.remove(&(first + i)) {
                Some(answer) => outcome(&answer),
                None => panic!("batch answer lacks id {}", first + i),
            })
            .collect()
    }

    async fn post(&self, what: &str, body: &Value) -> Value {
        let response = match self.client.post(&self.url).json(body).send().await {
            Ok(response) => response,
            Err(e) => panic!(
                "{what} to anvil at {} failed: {e}; anvil output:\n{}",
                self.url,
                self.log_tail()
            ),
        };
        let status = response.status();
        let text = response.text().await.unwrap();
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: HTTP {status}, not JSON ({e}): {text}"))
    }

    // --- chain state ---------------------------------------------------------------------

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> u64 {
        quantity(&self.rpc_ok("eth_chainId", json!([])).await)
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> u64 {
        quantity(&self.rpc_ok("eth_blockNumber", json!([])).await)
    }

    /// Mines `n` blocks now (`anvil_mine`), taking whatever is pending into the first.
    pub async fn mine(&self, n: u64) {
        self.rpc_ok("anvil_mine", json!([format!("{n:#x}")])).await;
    }

    /// Turns automine on or off (`evm_setAutomine`). With it off, sent transactions wait in
    /// the pool until [`Anvil::mine`], so many can land in one block.
    pub async fn set_automine(&self, on: bool) {
        self.rpc_ok("evm_setAutomine", json!([on])).await;
    }

    /// `evm_snapshot`: an id to [`Anvil::revert`] to.
    pub async fn snapshot(&self) -> String {
        let id = self.rpc_ok("evm_snapshot", json!([])).await;
        id.as_str().unwrap().to_string()
    }

    /// `evm_revert`: back to the chain as it was at the snapshot (later blocks and their logs
    /// gone); false when the id is unknown. A snapshot is used up by reverting to it.
    pub async fn revert(&self, id: &str) -> bool {
        self.rpc_ok("evm_revert", json!([id]))
            .await
            .as_bool()
            .unwrap()
    }

    /// The block `n` (`eth_getBlockByNumber`, transaction hashes only); `None` past the head.
    pub async fn block(&self, n: u64) -> Option<Value> {
        let block = self
            .rpc_ok("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))
            .await;
        (!block.is_null()).then_some(block)
    }

    /// The hash of block `n`; panics past the head.
    pub async fn block_hash(&self, n: u64) -> H256 {
        match self.block(n).await {
            Some(block) => serde_json::from_value(block["hash"].clone()).unwrap(),
            None => panic!("no block {n} (head is {})", self.block_number().await),
        }
    }

    /// Puts `code` at `address` (`anvil_setCode`).
    pub async fn set_code(&self, address: Address, code: &[u8]) {
        self.rpc_ok(
            "anvil_setCode",
            json!([address, hex::encode_prefixed(code)]),
        )
        .await;
    }

    /// The code at `address` (`eth_getCode`, latest).
    pub async fn code(&self, address: Address) -> Vec<u8> {
        let code = self.rpc_ok("eth_getCode", json!([address, "latest"])).await;
        unhex(code.as_str().unwrap())
    }

    // --- transactions ----------------------------------------------------------------------

    /// Deploys the compiled contract `name` from account 0 with `constructor_args` and waits
    /// for it to be mined; its address. Needs automine on (or someone mining).
    pub async fn deploy(&self, name: &str, constructor_args: &[Token]) -> Address {
        let mut data = contracts().get(name).bytecode.clone();
        data.extend(encode(constructor_args));
        let tx = json!({"from": self.sender(), "data": hex::encode_prefixed(&data)});
        let hash = match self.send_tx(tx).await {
            Ok(hash) => hash,
            Err(e) => panic!("deploying {name}: {e}"),
        };
        let receipt = self.wait_receipt(hash).await;
        if receipt.status != Some(1.into()) {
            panic!("deploying {name}: the transaction failed: {receipt:?}");
        }
        match receipt.contract_address {
            Some(address) => address,
            None => panic!("deploying {name}: receipt without contractAddress"),
        }
    }

    async fn send_tx(&self, tx: Value) -> Result<H256, RpcError> {
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await?;
        Ok(serde_json::from_value(hash).unwrap())
    }

    /// Sends `calldata` to `to` from account 0 (`eth_sendTransaction`, gas estimated by
    /// anvil) without waiting for it to be mined; the hash, or anvil's refusal (a bad nonce,
    /// say). A transaction that reverts is not refused: anvil sends it with 30 M gas when the
    /// estimate fails, and it is mined with status 0 (see [`Anvil::exec`]).
    pub async fn try_send(&self, to: Address, calldata: &[u8]) -> Result<H256, RpcError> {
        self.try_send_from(self.sender(), to, calldata).await
    }

    /// [`Anvil::try_send`] from another dev account.
    pub async fn try_send_from(
        &self,
        from: Address,
        to: Address,
        calldata: &[u8],
    ) -> Result<H256, RpcError> {
        self.send_tx(json!({"from": from, "to": to, "data": hex::encode_prefixed(calldata)}))
            .await
    }

    /// [`Anvil::try_send`] that panics on an error.
    pub async fn send(&self, to: Address, calldata: &[u8]) -> H256 {
        self.send_from(self.sender(), to, calldata).await
    }

    /// [`Anvil::send`] from another dev account.
    pub async fn send_from(&self, from: Address, to: Address, calldata: &[u8]) -> H256 {
        match self.try_send_from(from, to, calldata).await {
            Ok(hash) => hash,
            Err(e) => panic!("sending {} to {to:?}: {e}", hex::encode_prefixed(calldata)),
        }
    }

    /// Sends every `(to, calldata)` from account 0 in JSON-RPC batches (500 a request) with
    /// explicit consecutive nonces from the pending count, without waiting; their hashes in
    /// order. With automine off they all wait in the pool and the next [`Anvil::mine`]`(1)`
    /// puts them in one block (mind the block gas limit); with automine on each is mined as
    /// it arrives. Gas is estimated per transaction against the latest block, so one that only
    /// succeeds after an earlier one of the same batch gets anvil's fallback of 30 M gas
    /// (harmless under the default [`GAS_LIMIT`]). Panics if any is refused.
    pub async fn send_many(&self, txs: Vec<(Address, Vec<u8>)>) -> Vec<H256> {
        self.send_many_inner(txs, None).await
    }

    /// [`Anvil::send_many`] with a fixed gas limit for every transaction instead of anvil's
    /// estimate (a `mint` needs under 100 000); one that runs out of gas is mined with status
    /// 0. Only a little faster: anvil takes about 0.5 ms per `eth_sendTransaction` either way,
    /// so for thousands of mints `Nft721Batch.mintBatch` (10 000 in about a second) is the
    /// quick route.
    pub async fn send_many_with_gas(&self, txs: Vec<(Address, Vec<u8>)>, gas: u64) -> Vec<H256> {
        self.send_many_inner(txs, Some(gas)).await
    }

    async fn send_many_inner(&self, txs: Vec<(Address, Vec<u8>)>, gas: Option<u64>) -> Vec<H256> {
        let from = self.sender();
        let pending = self
            .rpc_ok("eth_getTransactionCount", json!([from, "pending"]))
            .await;
        let mut nonce = quantity(&pending);
        let mut hashes = Vec::with_capacity(txs.len());
        for chunk in txs.chunks(500) {
            let calls = chunk
                .iter()
                .map(|(to, data)| {
                    let mut tx = json!({
                        "from": from,
                        "to": to,
                        "data": hex::encode_prefixed(data),
                        "nonce": format!("{nonce:#x}"),
                    });
                    if let Some(gas) = gas {
                        tx["gas"] = json!(format!("{gas:#x}"));
                    }
                    nonce += 1;
                    ("eth_sendTransaction", json!([tx]))
                })
                .collect();
            for (i, outcome) in self.rpc_batch(calls).await.into_iter().enumerate() {
                match outcome {
                    Ok(hash) => hashes.push(serde_json::from_value(hash).unwrap()),
                    Err(e) => panic!("send_many: transaction {} refused: {e}", hashes.len() + i),
                }
            }
        }
        hashes
    }

    /// Waits (up to 30 s) for `tx`'s receipt. A transaction waiting in the pool with automine
    /// off waits until someone mines.
    pub async fn wait_receipt(&self, tx: H256) -> TransactionReceipt {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let receipt = self.rpc_ok("eth_getTransactionReceipt", json!([tx])).await;
            if !receipt.is_null() {
                return serde_json::from_value(receipt.clone())
                    .unwrap_or_else(|e| panic!("receipt of {tx:?}: {e}: {receipt}"));
            }
            if Instant::now() > deadline {
                panic!("no receipt for {tx:?} after 30 s (automine off and nothing mined?)");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends, waits for the receipt and panics unless the transaction succeeded.
    pub async fn exec(&self, to: Address, calldata: &[u8]) -> TransactionReceipt {
        let hash = self.send(to, calldata).await;
        let receipt = self.wait_receipt(hash).await;
        if receipt.status != Some(1.into()) {
            panic!("transaction {hash:?} to {to:?} failed: {receipt:?}");
        }
        receipt
    }

    /// `eth_call` at the latest block: the returned bytes, or the error (with revert data).
    pub async fn call(&self, to: Address, calldata: &[u8]) -> Result<Bytes, RpcError> {
        self.call_at(to, calldata, "latest").await
    }

    /// `eth_call` at a block tag or `0x` number.
    pub async fn call_at(
        &self,
        to: Address,
        calldata: &[u8],
        block: &str,
    ) -> Result<Bytes, RpcError> {
        let call = json!({"to": to, "data": hex::encode_prefixed(calldata)});
        let result = self.rpc("eth_call", json!([call, block])).await?;
        Ok(serde_json::from_value(result).unwrap())
    }

    /// `eth_getLogs` over blocks `from..=to`, of one contract or all; panics on an error.
    pub async fn logs(&self, from: u64, to: u64, address: Option<Address>) -> Vec<Log> {
        let mut filter = json!({"fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}")});
        if let Some(address) = address {
            filter["address"] = json!(address);
        }
        let logs = self.rpc_ok("eth_getLogs", json!([filter])).await;
        serde_json::from_value(logs).unwrap()
    }

    // --- the test contracts ------------------------------------------------------------------

    /// Sends `mint(to, id)` to one of the test NFTs (for `Token20` see [`Anvil::erc20_mint`]).
    pub async fn mint(&self, nft: Address, to: Address, id: U256) -> H256 {
        self.send(nft, &mint_calldata(to, id)).await
    }

    /// Sends `Nft721Batch.mintBatch(to, first, count)`: `count` mints in one transaction.
    pub async fn mint_batch(&self, nft: Address, to: Address, first: U256, count: u64) -> H256 {
        self.send(nft, &mint_batch_calldata(to, first, count)).await
    }

    /// Sends `Token20.mint(to, amount)`: an ERC-20 Transfer from zero (3 topics).
    pub async fn erc20_mint(&self, token: Address, to: Address, amount: U256) -> H256 {
        self.send(
            token,
            &calldata("mint(address,uint256)", &[addr(to), uint(amount)]),
        )
        .await
    }

    /// Installs our Multicall3's runtime code at [`MULTICALL3`]; that address.
    pub async fn install_multicall3(&self) -> Address {
        let address = multicall3();
        self.set_code(address, &contracts().get("Multicall3").runtime)
            .await;
        address
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `port` when `line` is anvil's `Listening on 127.0.0.1:<port>`.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("Listening on ")?;
    rest.rsplit(':').next()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// ABI helpers

/// The 4-byte selector of a function signature such as `mint(address,uint256)`.
pub fn selector(signature: &str) -> [u8; 4] {
    let hash = keccak256(signature.as_bytes());
    [hash[0], hash[1], hash[2], hash[3]]
}

/// Calldata: the selector of `signature` followed by the ABI-encoded `args`.
pub fn calldata(signature: &str, args: &[Token]) -> Vec<u8> {
    let mut data = selector(signature).to_vec();
    data.extend(encode(args));
    data
}

/// `Token::Address`.
pub fn addr(a: Address) -> Token {
    Token::Address(a)
}

/// `Token::Uint`.
pub fn uint(v: impl Into<U256>) -> Token {
    Token::Uint(v.into())
}

/// `Token::String`.
pub fn string(s: &str) -> Token {
    Token::String(s.to_string())
}

/// The topic of `Transfer(address,address,uint256)`, ERC-721's and ERC-20's alike.
pub fn transfer_topic() -> H256 {
    H256(keccak256(b"Transfer(address,address,uint256)"))
}

/// [`MULTICALL3`] as an address.
pub fn multicall3() -> Address {
    MULTICALL3.parse().unwrap()
}

/// `mint(to, id)`.
pub fn mint_calldata(to: Address, id: U256) -> Vec<u8> {
    calldata("mint(address,uint256)", &[addr(to), uint(id)])
}

/// `mintBatch(to, first, count)`.
pub fn mint_batch_calldata(to: Address, first: U256, count: u64) -> Vec<u8> {
    calldata(
        "mintBatch(address,uint256,uint256)",
        &[addr(to), uint(first), uint(count)],
    )
}

/// `burn(id)`.
pub fn burn_calldata(id: U256) -> Vec<u8> {
    calldata("burn(uint256)", &[uint(id)])
}

/// `transferFrom(from, to, id)` (the sender must be `from`, the owner).
pub fn transfer_from_calldata(from: Address, to: Address, id: U256) -> Vec<u8> {
    calldata(
        "transferFrom(address,address,uint256)",
        &[addr(from), addr(to), uint(id)],
    )
}

/// `tokenURI(id)`.
pub fn token_uri_calldata(id: U256) -> Vec<u8> {
    calldata("tokenURI(uint256)", &[uint(id)])
}

/// `supportsInterface(id)`.
pub fn supports_interface_calldata(interface: [u8; 4]) -> Vec<u8> {
    calldata(
        "supportsInterface(bytes4)",
        &[Token::FixedBytes(interface.to_vec())],
    )
}

/// `aggregate3(calls)` with `(target, allowFailure, callData)` triples.
pub fn aggregate3_calldata(calls: &[(Address, bool, Vec<u8>)]) -> Vec<u8> {
    let calls = calls
        .iter()
        .map(|(target, allow_failure, data)| {
            Token::Tuple(vec![
                Token::Address(*target),
                Token::Bool(*allow_failure),
                Token::Bytes(data.clone()),
            ])
        })
        .collect();
    calldata("aggregate3((address,bool,bytes)[])", &[Token::Array(calls)])
}

/// The `(success, returnData)` pairs of an `aggregate3` answer.
pub fn decode_aggregate3(data: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let kind = ParamType::Array(Box::new(ParamType::Tuple(vec![
        ParamType::Bool,
        ParamType::Bytes,
    ])));
    let mut tokens = decode(&[kind], data).unwrap();
    let Some(Token::Array(results)) = tokens.pop() else {
        panic!("aggregate3 answer is not an array");
    };
    results
        .into_iter()
        .map(|result| match result {
            Token::Tuple(fields) => match fields.as_slice() {
                [Token::Bool(ok), Token::Bytes(data)] => (*ok, data.clone()),
                other => panic!("aggregate3 result fields: {other:?}"),
            },
            other => panic!("aggregate3 result: {other:?}"),
        })
        .collect()
}

/// An ABI-encoded `string` return value.
pub fn decode_string(data: &[u8]) -> String {
    match decode(&[ParamType::String], data).unwrap().pop() {
        Some(Token::String(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

/// An ABI-encoded `bool` return value.
pub fn decode_bool(data: &[u8]) -> bool {
    match decode(&[ParamType::Bool], data).unwrap().pop() {
        Some(Token::Bool(b)) => b,
        other => panic!("not a bool: {other:?}"),
    }
}

/// An ABI-encoded `address` return value.
pub fn decode_address(data: &[u8]) -> Address {
    match decode(&[ParamType::Address], data).unwrap().pop() {
        Some(Token::Address(a)) => a,
        other => panic!("not an address: {other:?}"),
    }
}

/// An ABI-encoded `uint256` return value.
pub fn decode_uint(data: &[u8]) -> U256 {
    match decode(&[ParamType::Uint(256)], data).unwrap().pop() {
        Some(Token::Uint(v)) => v,
        other => panic!("not a uint256: {other:?}"),
    }
}

/// The reason of `Error(string)` revert data (`0x08c379a0` ++ an encoded string).
pub fn decode_revert_reason(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(&selector("Error(string)")[..])?;
    match decode(&[ParamType::String], rest).ok()?.pop() {
        Some(Token::String(s)) => Some(s),
        _ => None,
    }
}

/// A `0x` quantity or data string as a `u64`.
pub fn quantity(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a hex quantity: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("not a hex quantity: {text}: {e}"))
}

/// `0x`-prefixed (or bare) hex as bytes.
pub fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|e| panic!("bad hex {text:?}: {e}"))
}
