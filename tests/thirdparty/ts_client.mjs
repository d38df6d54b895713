// A host built on the official TypeScript SDK (@modelcontextprotocol/sdk): connect, list the tools,
// call one, print one JSON line {tools, result, progress, lastProgress} on stdout.
//
//   node ts_client.mjs --mode stdio --tool NAME [--args JSON] [--env KEY=VALUE]... -- COMMAND [ARG...]
//   node ts_client.mjs --mode http --url URL --token TOKEN --tool NAME [--args JSON]
//
// The SDK is resolved from the repository's .tools/node (installed by `make node-tools`), not from
// this file's folder: ESM imports ignore NODE_PATH, so the script resolves it with createRequire.
// The client caches each tool's outputSchema on tools/list and validates structuredContent against
// it on tools/call, so a result that breaks its own schema fails here.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const toolsDir = fileURLToPath(new URL("../../.tools/node/", import.meta.url));
if (!existsSync(`${toolsDir}node_modules/@modelcontextprotocol/sdk`)) {
  process.stderr.write(`@modelcontextprotocol/sdk is not installed in ${toolsDir}: run \`make node-tools\`\n`);
  process.exit(3);
}
const require = createRequire(`${toolsDir}package.json`);
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

const { values, positionals } = parseArgs({
  options: {
    mode: { type: "string" },
    url: { type: "string" },
    token: { type: "string" },
    tool: { type: "string" },
    args: { type: "string", default: "{}" },
    env: { type: "string", multiple: true, default: [] },
  },
  allowPositionals: true,
});

function transportFor(options, command) {
  if (options.mode === "stdio") {
    if (command.length === 0) throw new Error("stdio mode needs a server command after --");
    const env = Object.fromEntries(
      options.env.map((pair) => {
        const at = pair.indexOf("=");
        if (at < 1) throw new Error(`--env wants KEY=VALUE, got ${pair}`);
        return [pair.slice(0, at), pair.slice(at + 1)];
      }),
    );
    // The SDK merges `env` over a minimal inherited environment (HOME, PATH, ...).
    return new StdioClientTransport({ command: command[0], args: command.slice(1), env, stderr: "inherit" });
  }
  if (options.mode === "http") {
    if (!options.url || !options.token) throw new Error("http mode needs --url and --token");
    return new StreamableHTTPClientTransport(new URL(options.url), {
      requestInit: { headers: { Authorization: `Bearer ${options.token}` } },
    });
  }
  throw new Error(`--mode must be stdio or http, got ${options.mode}`);
}

async function main() {
  if (!values.tool) throw new Error("--tool is required");
  const toolArgs = JSON.parse(values.args);
  const client = new Client({ name: "polar-mcp-thirdparty-test", version: "1.0.0" });
  await client.connect(transportFor(values, positionals));
  try {
    const listed = await client.listTools();
    let progress = 0;
    let lastProgress = null;
    const result = await client.callTool({ name: values.tool, arguments: toolArgs }, undefined, {
      onprogress: (notification) => {
        progress += 1;
        lastProgress = notification;
      },
    });
    const line = { tools: listed.tools.map((tool) => tool.name), result, progress, lastProgress };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  } finally {
    await client.close();
  }
}

main().catch((error) => {
  process.stderr.write(`ts_client: ${error?.stack ?? error}\n`);
  process.exit(1);
});
