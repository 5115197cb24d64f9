// make bench-peers: The Graph's graph-client fetches every token of a subgraph at one block.
//
// The documented way: a .graphclientrc.yml naming the subgraph with the autoPagination
// transform, a query document asking `first: N` (more than graph-node's 1,000 per page),
// `graphclient build`, then `execute` of the built document.
//
//   node graph_client_peer.mjs build --install DIR --project DIR --url URL --first N
//   node graph_client_peer.mjs run --project DIR --block T --out FILE
//
// `build` writes the config and the document into the project directory (inside the
// install directory, so the built artifacts find node_modules) and runs `graphclient build`.
// `run` writes one JSON array per row to FILE ([id, tokenID, contract id, tokenURI,
// blockNumber]) and prints one JSON line: the version, the seconds execute() took, and the
// first error the client reported. Exits 0 whatever graph-client did, so the bench can report
// it; non-zero only for a mistake of this script's own.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function options(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`expected --name value pairs, got ${argv.slice(i).join(' ')}`);
    }
    opts[argv[i].slice(2)] = argv[i + 1];
  }
  return opts;
}

function need(opts, name) {
  if (opts[name] === undefined) throw new Error(`--${name} is required`);
  return opts[name];
}

function versionOf(installDir) {
  const read = (pkg) =>
    JSON.parse(readFileSync(join(installDir, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  return `client-cli ${read('@graphprotocol/client-cli')}, auto-pagination ${read('@graphprotocol/client-auto-pagination')}`;
}

function firstLine(text) {
  return String(text ?? '').trim().split('\n').find((l) => l.trim() !== '') ?? '';
}

function build(opts) {
  const install = need(opts, 'install');
  const project = need(opts, 'project');
  const url = need(opts, 'url');
  const first = Number.parseInt(need(opts, 'first'), 10);
  mkdirSync(project, { recursive: true });
  writeFileSync(
    join(project, '.graphclientrc.yml'),
    [
      'sources:',
      '  - name: devnet',
      '    handler:',
      '      graphql:',
      `        endpoint: ${url}`,
      '    transforms:',
      '      - autoPagination:',
      '          validateSchema: true',
      'documents:',
      '  - ./tokens.graphql',
      '',
    ].join('\n'),
  );
  // `first` is written into the document: the transform reads a literal (a `$first`
  // variable is left declared but unused, which the server rejects).
  writeFileSync(
    join(project, 'tokens.graphql'),
    `query AllTokens($block: Int!) {
  tokens(first: ${first}, block: { number: $block }) {
    id
    tokenID
    contract { id }
    tokenURI
    blockNumber
  }
}
`,
  );
  const cli = join(install, 'node_modules', '.bin', 'graphclient');
  const done = spawnSync(cli, ['build', '--fileType', 'js', '--dir', project], {
    cwd: project,
    encoding: 'utf8',
  });
  const report = { client: 'graph-client', version: versionOf(install) };
  if (done.status !== 0) {
    const lines = `${done.stderr ?? ''}\n${done.stdout ?? ''}`.split('\n');
    report.error =
      lines.find((l) => /error/i.test(l))?.trim() ?? firstLine(done.error ?? done.stderr);
    console.log(JSON.stringify(report));
    process.exit(1);
  }
  console.log(JSON.stringify(report));
}

async function run(opts) {
  const project = need(opts, 'project');
  const block = Number.parseInt(need(opts, 'block'), 10);
  const outPath = need(opts, 'out');
  const install = join(project, '..');
  const report = { client: 'graph-client', version: versionOf(install) };
  const out = createWriteStream(outPath);
  let rows = 0;
  try {
    const client = await import(pathToFileURL(join(project, '.graphclient', 'index.mjs')).href);
    const started = performance.now();
    const result = await client.execute(client.AllTokensDocument, { block });
    const seconds = (performance.now() - started) / 1000;
    const tokens = result?.data?.tokens ?? [];
    if (result?.errors?.length) {
      const distinct = new Set(result.errors.map((e) => e.message));
      report.error = `${firstLine(result.errors[0].message)} (${result.errors.length} errors, ${distinct.size} distinct)`;
    }
    if (!report.error || tokens.length > 0) report.seconds = seconds;
    for (const t of tokens) {
      out.write(`${JSON.stringify([t.id, t.tokenID, t.contract?.id ?? null, t.tokenURI, t.blockNumber])}\n`);
      rows += 1;
    }
  } catch (e) {
    report.error = `${e?.name ?? 'Error'}: ${firstLine(e?.message ?? e)}`.slice(0, 500);
  }
  await new Promise((resolve) => out.end(resolve));
  report.rows = rows;
  console.log(JSON.stringify(report));
  // The mesh keeps timers and sockets open; the fetch is over.
  process.exit(0);
}

const [command, ...rest] = process.argv.slice(2);
const opts = options(rest);
if (command === 'build') build(opts);
else if (command === 'run') await run(opts);
else {
  console.error('usage: graph_client_peer.mjs build|run --name value ...');
  process.exit(2);
}
