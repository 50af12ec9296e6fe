#!/usr/bin/env node
// Writes the ABI + bytecode artifacts the Rust side embeds with alloy's
// `sol!(Name, "contracts/artifacts/Name.json")`.
//
//   node scripts/export-artifacts.js <forge out dir> <artifacts dir>
//
// * every deployable contract compiled from src/ -> <artifacts>/<Name>.json with
//   only the stable fields: contractName, sourceName, abi, bytecode.object,
//   deployedBytecode.object (forge's metadata, ids and build info are dropped);
// * the real Safe v1.4.1 contracts, copied verbatim from the compiled artifacts in
//   @safe-global/safe-contracts -> <artifacts>/safe/<Name>.json.
// Output is deterministic (sorted, fixed formatting) so a rebuild is byte-identical.
'use strict';

const fs = require('fs');
const path = require('path');

const [outDir, artifactsDir] = process.argv.slice(2);
if (!outDir || !artifactsDir) {
  console.error('usage: export-artifacts.js <forge out dir> <artifacts dir>');
  process.exit(2);
}

const SAFE_DIR = path.join(__dirname, '..', '..', 'node_modules', '@safe-global', 'safe-contracts', 'build', 'artifacts', 'contracts');
const SAFE_CONTRACTS = {
  Safe: 'Safe.sol/Safe.json',
  SafeL2: 'SafeL2.sol/SafeL2.json',
  SafeProxyFactory: 'proxies/SafeProxyFactory.sol/SafeProxyFactory.json',
  SafeProxy: 'proxies/SafeProxy.sol/SafeProxy.json',
  CompatibilityFallbackHandler: 'handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler.json',
  MultiSend: 'libraries/MultiSend.sol/MultiSend.json',
  MultiSendCallOnly: 'libraries/MultiSendCallOnly.sol/MultiSendCallOnly.json',
};

function write(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

// Start from an empty directory so deleted contracts disappear too.
fs.rmSync(artifactsDir, { recursive: true, force: true });

const seen = new Map();
for (const dir of fs.readdirSync(outDir).sort()) {
  const full = path.join(outDir, dir);
  if (!dir.endsWith('.sol') || !fs.statSync(full).isDirectory()) continue;
  for (const file of fs.readdirSync(full).sort()) {
    if (!file.endsWith('.json')) continue;
    const artifact = JSON.parse(fs.readFileSync(path.join(full, file), 'utf8'));
    const target = artifact.metadata && artifact.metadata.settings && artifact.metadata.settings.compilationTarget;
    const sourceName = target && Object.keys(target)[0];
    if (!sourceName || !sourceName.startsWith('src/')) continue; // tests, OZ, Safe sources
    const bytecode = artifact.bytecode && artifact.bytecode.object;
    if (!bytecode || bytecode === '0x') continue; // interfaces, abstract contracts, libraries without code
    const contractName = file.replace(/\.json$/, '');
    if (seen.has(contractName)) {
      console.error(`export-artifacts: two contracts named ${contractName} (${seen.get(contractName)}, ${sourceName})`);
      process.exit(1);
    }
    seen.set(contractName, sourceName);
    write(path.join(artifactsDir, `${contractName}.json`), {
      contractName,
      sourceName,
      abi: artifact.abi,
      bytecode: { object: bytecode },
      deployedBytecode: { object: artifact.deployedBytecode.object },
    });
  }
}

for (const [name, rel] of Object.entries(SAFE_CONTRACTS)) {
  const artifact = JSON.parse(fs.readFileSync(path.join(SAFE_DIR, rel), 'utf8'));
  write(path.join(artifactsDir, 'safe', `${name}.json`), artifact);
}

console.log(`exported ${seen.size} contracts and ${Object.keys(SAFE_CONTRACTS).length} Safe artifacts to ${artifactsDir}`);
