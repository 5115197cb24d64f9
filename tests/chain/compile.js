#!/usr/bin/env node
// Compiles every Solidity file in tests/chain/contracts with solc-js and writes one JSON
// file of artifacts for the chain-source tests:
//
//   { "<ContractName>": { "abi": [...], "bytecode": "0x...", "deployedBytecode": "0x..." }, ... }
//
// Usage: node tests/chain/compile.js OUT.json
//
// solc-js comes from .tools/chain/node_modules/solc (scripts/install-chain-tools.sh puts it
// there); NIFTY_SOLCJS names another solc-js package directory. Abstract contracts (no
// bytecode) are left out. Compiler errors are printed and the exit status is 1; warnings
// are printed on stderr and do not fail the build.
'use strict';

const fs = require('fs');
const path = require('path');

const repo = path.resolve(__dirname, '..', '..');
const contractsDir = path.join(__dirname, 'contracts');
const solcDir = process.env.NIFTY_SOLCJS || path.join(repo, '.tools', 'chain', 'node_modules', 'solc');

function fail(message) {
  process.stderr.write(`compile.js: ${message}\n`);
  process.exit(1);
}

const out = process.argv[2];
if (!out) {
  fail('usage: node tests/chain/compile.js OUT.json');
}

let solc;
try {
  solc = require(solcDir);
} catch (err) {
  fail(`solc-js not found at ${solcDir} (${err.code || err.message}); ` +
    'run scripts/install-chain-tools.sh (make chain-tools)');
}

const files = fs.readdirSync(contractsDir).filter((f) => f.endsWith('.sol')).sort();
if (files.length === 0) {
  fail(`no .sol files in ${contractsDir}`);
}

// Source units are named by file name, so `import "./Erc721Core.sol";` resolves among them
// without an import callback.
const sources = {};
for (const file of files) {
  sources[file] = { content: fs.readFileSync(path.join(contractsDir, file), 'utf8') };
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // Fixed rather than the compiler's default so the bytecode does not depend on which
    // hardfork a solc release thinks is current; anvil runs later forks too.
    evmVersion: 'cancun',
    outputSelection: {
      '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const diagnostics = output.errors || [];
const errors = diagnostics.filter((d) => d.severity === 'error');
for (const d of diagnostics) {
  if (d.severity !== 'error') {
    process.stderr.write(d.formattedMessage || `${d.severity}: ${d.message}\n`);
  }
}
if (errors.length > 0) {
  for (const e of errors) {
    process.stderr.write(e.formattedMessage || `error: ${e.message}\n`);
  }
  fail(`${errors.length} compiler error(s) with solc ${solc.version()}`);
}

const artifacts = {};
for (const [file, contracts] of Object.entries(output.contracts || {})) {
  for (const [name, contract] of Object.entries(contracts)) {
    const bytecode = contract.evm.bytecode.object;
    if (!bytecode) {
      continue; // abstract contract or interface
    }
    if (artifacts[name]) {
      fail(`contract ${name} is defined twice (again in ${file})`);
    }
    artifacts[name] = {
      abi: contract.abi,
      bytecode: `0x${bytecode}`,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    };
  }
}

fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
// Written beside the target and renamed, so a reader never sees half a file.
const tmp = `${out}.${process.pid}.tmp`;
fs.writeFileSync(tmp, `${JSON.stringify(artifacts, null, 1)}\n`);
fs.renameSync(tmp, out);
process.stdout.write(`compile.js: ${Object.keys(artifacts).sort().join(', ')} (solc ${solc.version()}) -> ${out}\n`);
