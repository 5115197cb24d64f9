//! Black-box tests of the `nifty` binary: exit codes, messages, and the local-store commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use nifty_state::{Cursor, Page, Position, Store, StoreOptions, Token, TokenId, TokenKey};

const SOURCE: &str = "[sources.main]\nkind = \"graph\"\nurl = \"http://127.0.0.1:9/graphql\"\n";

/// Runs nifty in `dir` with a clean NIFTY_* environment.
fn nifty(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nifty"));
    cmd.current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("NIFTY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("nifty.toml"),
        format!("data_dir = \"store\"\n{extra}"),
    )
    .unwrap();
}

#[test]
fn status_on_a_fresh_data_dir_reports_an_empty_store() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), SOURCE);
    let (code, out, err) = text(&nifty(d.path(), &["status", "--json"], &[]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokens"], 0);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["sources"][0]["name"], "main");
    assert_eq!(v["sources"][0]["cursor"], serde_json::Value::Null);
    let (code, out, _) = text(&nifty(d.path(), &["status"], &[]));
    assert_eq!(code, 0);
    assert!(out.contains("main") && out.contains("not started"), "{out}");
}

#[test]
fn status_reports_what_a_page_commit_stored() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), SOURCE);
    {
        let store = Store::open(&d.path().join("store"), &StoreOptions::default()).unwrap();
        let tokens: Vec<_> = (0..7u64)
            .map(|i| {
                let k = TokenKey {
                    contract: nifty_state::Address([7; 20]),
                    token_id: TokenId(i.into()),
                };
                (k, Token::scraped("main", &k, None, 40))
            })
            .collect();
        let cursor = Cursor {
            position: Position {
                block: 40,
                id: tokens[6].0.graph_id(),
            },
            snapshot: Some(60),
            head: Some(80),
            ..Default::default()
        };
        store
            .commit_page(&Page {
                cursor_name: "main",
                cursor,
                tokens: &tokens,
                contracts: &[],
            })
            .unwrap();
    }
    let (code, out, err) = text(&nifty(d.path(), &["status", "--json", "--audit"], &[]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokens"], 7);
    assert_eq!(v["tokens_by_status"]["queued"], 7);
    assert_eq!(v["outbox"]["analyse"], 1, "one analysis item per page");
    let s = &v["sources"][0];
    assert_eq!(
        (
            s["cursor"]["block"].as_u64(),
            s["snapshot"].as_u64(),
            s["head"].as_u64()
        ),
        (Some(40), Some(60), Some(80))
    );
    assert_eq!(
        (s["lag"].as_u64(), s["tokens"].as_u64()),
        (Some(40), Some(7))
    );
    assert_eq!(v["audit"]["clean"], true);
    assert_eq!(v["audit"]["tokens_scanned"], 7);
}

#[test]
fn a_second_process_gets_the_in_use_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), "");
    let held = Store::open(&d.path().join("store"), &StoreOptions::default()).unwrap();
    let (code, out, err) = text(&nifty(d.path(), &["status"], &[]));
    assert_eq!(code, 3, "stdout {out} stderr {err}");
    assert!(
        err.contains("store") && err.contains("in use by another nifty process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("serves no API"), "{err}");
    assert!(
        !err.contains("--api"),
        "a holder without an API gets no --api advice: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A holder that announced where it serves: the advice names that address,
    // not a default port.
    held.announce_api("http://127.0.0.1:45678").unwrap();
    let (code, _, err) = text(&nifty(d.path(), &["status"], &[]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--api http://127.0.0.1:45678"), "{err}");
    assert!(!err.contains("8640"), "{err}");
    drop(held);
    assert_eq!(text(&nifty(d.path(), &["status"], &[])).0, 0);
}

#[test]
fn bad_config_names_the_key_and_exits_2() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "colour = true\n",
            &[],
            "key `colour`: unknown field `colour`",
        ),
        (
            "[store]\ncache_mb = \"lots\"\n",
            &[],
            "key `store.cache_mb`: invalid type: string \"lots\"",
        ),
        (
            &format!("{SOURCE}api_key_env = \"MY_GRAPH_KEY\"\n"),
            &[],
            "`sources.main.api_key_env` names environment variable MY_GRAPH_KEY, which is not set",
        ),
        (
            &format!("{SOURCE}page_size = 1001\n"),
            &[],
            "`sources.main.page_size` = 1001",
        ),
        (
            "",
            &[("NIFTY_STORE_CACHE_MB", "x")],
            "NIFTY_STORE_CACHE_MB (key `store.cache_mb`): expected an integer",
        ),
        ("[http\n", &[], "nifty.toml"),
    ];
    for (cfg, env, want) in cases {
        let d = tempfile::tempdir().unwrap();
        write_config(d.path(), cfg);
        let (code, _, err) = text(&nifty(d.path(), &["status"], env));
        assert_eq!(code, 2, "{cfg:?}: {err}");
        assert!(err.contains(want), "{cfg:?}:\n got {err}\n want {want}");
        assert!(
            !d.path().join("store").exists(),
            "{cfg:?}: a bad config must not touch the store"
        );
    }
    // An explicit file that does not exist.
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = text(&nifty(
        d.path(),
        &["--config", "missing.toml", "status"],
        &[],
    ));
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read config file missing.toml"),
        "{err}"
    );
}

#[test]
fn bad_arguments_exit_2_with_clap_messages() {
    let d = tempfile::tempdir().unwrap();
    for args in [
        &["cursor", "set", "main", "ten"][..],
        &["frobnicate"],
        &["status", "--jsno"],
        &["--log-format", "xml", "status"],
    ] {
        let (code, _, err) = text(&nifty(d.path(), args, &[]));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("error:"), "{err}");
    }
}

#[test]
fn config_init_writes_a_file_that_loads_and_refuses_to_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = text(&nifty(d.path(), &["config", "init"], &[]));
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(d.path().join("nifty.toml")).unwrap();
    assert!(written.contains("data_dir = \"nifty-data\""));
    let (code, out, _) = text(&nifty(d.path(), &["config", "show"], &[]));
    assert_eq!(code, 0);
    assert!(out.contains("listen = \"127.0.0.1:8640\""), "{out}");
    let (code, _, err) = text(&nifty(d.path(), &["config", "init"], &[]));
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    // init works even when the existing file is broken, so an operator can start over.
    std::fs::write(d.path().join("nifty.toml"), "garbage = [").unwrap();
    assert_eq!(
        text(&nifty(d.path(), &["config", "init", "--force"], &[])).0,
        0
    );
}

#[test]
fn cursors_move_forward_with_set_and_back_only_with_rewind() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), SOURCE);
    let id = "0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_12";
    let (code, out, err) = text(&nifty(
        d.path(),
        // Its endpoint does not answer: only --force moves it.
        &["cursor", "set", "main", "100", "--id", id, "--force"],
        &[],
    ));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "not started -> block 100 after 0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_12"
        ),
        "{out}"
    );

    let (code, _, err) = text(&nifty(d.path(), &["cursor", "set", "main", "99"], &[]));
    assert_eq!(code, 2);
    assert!(
        err.contains("would go backwards") && err.contains("nifty cursor rewind"),
        "{err}"
    );
    let (code, _, err) = text(&nifty(d.path(), &["cursor", "rewind", "main", "101"], &[]));
    assert_eq!(code, 2);
    assert!(err.contains("not a rewind"), "{err}");
    let (code, _, err) = text(&nifty(d.path(), &["cursor", "set", "mian", "5"], &[]));
    assert_eq!(code, 2);
    assert!(
        err.contains("no source or cursor named \"mian\"; known: main"),
        "{err}"
    );
    let (code, _, err) = text(&nifty(
        d.path(),
        &["cursor", "set", "main", "500", "--id", "0x12_5"],
        &[],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("--id \"0x12_5\""), "{err}");

    let (code, _, err) = text(&nifty(d.path(), &["cursor", "rewind", "main", "50"], &[]));
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = text(&nifty(d.path(), &["cursor", "show", "main", "--json"], &[]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["main"]["position"]["block"], 50);
    assert_eq!(v["main"]["position"]["id"], "");
    let (code, _, err) = text(&nifty(d.path(), &["cursor", "show", "other"], &[]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn json_logs_are_json_and_secrets_never_appear() {
    let d = tempfile::tempdir().unwrap();
    write_config(
        d.path(),
        &format!(
            "{SOURCE}api_key_env = \"GRAPH_KEY\"\n[http]\nadmin_token_env = \"ADMIN_TOKEN\"\n"
        ),
    );
    let env = [
        ("GRAPH_KEY", "sk-live-0123456789"),
        ("ADMIN_TOKEN", "adm-0123456789"),
    ];
    let o = nifty(
        d.path(),
        &[
            "--log-format",
            "json",
            "cursor",
            "set",
            "main",
            "3",
            "--force",
        ],
        &env,
    );
    let (code, out, err) = text(&o);
    assert_eq!(code, 0, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("cursor moved"))
        .unwrap_or_else(|| panic!("no log line in {err}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["cursor"], "main");
    for args in [
        &["config", "show"][..],
        &["status", "--json"],
        &["cursor", "show"],
    ] {
        let (_, out2, err2) = text(&nifty(d.path(), args, &env));
        for s in [&out, &err, &out2, &err2] {
            assert!(
                !s.contains("sk-live") && !s.contains("adm-0123"),
                "{args:?} leaked a secret: {s}"
            );
        }
    }
}

#[test]
fn env_overrides_reach_the_commands() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, err) = text(&nifty(
        d.path(),
        &["status", "--json"],
        &[("NIFTY_DATA_DIR", "elsewhere")],
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"data_dir\": \"elsewhere\""), "{out}");
    assert!(
        d.path()
            .join("elsewhere")
            .join(nifty_state::LOCK_FILE)
            .exists()
    );
    // The command line wins over the environment.
    let (_, out, _) = text(&nifty(
        d.path(),
        &["--data-dir", "cli", "status", "--json"],
        &[("NIFTY_DATA_DIR", "elsewhere")],
    ));
    assert!(out.contains("\"data_dir\": \"cli\""), "{out}");
}

#[test]
fn bad_arguments_and_unreachable_daemons_get_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    write_config(
        d.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\n[sources.chain]\nkind = \"rpc\"\nurl = \"http://127.0.0.1:9/v2/KEY-1234\"\nmulticall = \"0x12\"\n",
    );
    let (code, _, err) = text(&nifty(d.path(), &["run"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`sources.chain.multicall` = \"0x12\"") && !err.contains("KEY-1234"),
        "{err}"
    );
    // A daemon asked for admin writes refuses to start without the token; commands that
    // do not need it work.
    write_config(
        d.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_env = \"NIFTY_TEST_UNSET_TOKEN\"\n",
    );
    let (code, _, err) = text(&nifty(d.path(), &["run"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("NIFTY_TEST_UNSET_TOKEN, which is not set"),
        "{err}"
    );
    assert_eq!(text(&nifty(d.path(), &["status"], &[])).0, 0);
    std::fs::remove_file(d.path().join("nifty.toml")).unwrap();
    let (code, _, err) = text(&nifty(d.path(), &["report", "--since", "soon"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--since \"soon\""), "{err}");
    let (code, _, err) = text(&nifty(d.path(), &["check", "0x12", "1"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a contract address"), "{err}");
    let (code, _, err) = text(&nifty(d.path(), &["check", "notacid"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a CID"), "{err}");
    let (code, _, err) = text(&nifty(d.path(), &["backfill"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no source configured; give --graph URL"),
        "{err}"
    );
    let (code, _, err) = text(&nifty(
        d.path(),
        &["status", "--api", "http://127.0.0.1:1"],
        &[],
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach the daemon at http://127.0.0.1:1/")
            && err.contains("is `nifty run` running there?"),
        "{err}"
    );
    let (code, _, err) = text(&nifty(
        d.path(),
        &["status", "--api", "http://admin:hunter2@127.0.0.1:1"],
        &[],
    ));
    assert_eq!(code, 1);
    assert!(!err.contains("hunter2"), "{err}");
    let (code, _, err) = text(&nifty(
        d.path(),
        &["report", "--api", "127.0.0.1:8640"],
        &[],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("not an http(s) URL"), "{err}");
    let (code, _, err) = text(&nifty(
        d.path(),
        &["cursor", "set", "main", "5", "--api", "http://127.0.0.1:1"],
        &[],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("needs its admin token"), "{err}");
}
