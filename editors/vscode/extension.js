// A minimal VS Code client for `verdict lsp` (vscode-languageclient over stdio).
// Build: `npm install` in this folder, then `npx @vscode/vsce package` or run it with F5 from
// VS Code ("Run Extension"). Not built in CI.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("verdict");
  const command = config.get("server.path", "verdict");
  const documentSelector = [{ scheme: "file", language: "verdict" }];
  if (config.get("server.yamlAndJson", true)) {
    documentSelector.push({ scheme: "file", language: "yaml" }, { scheme: "file", language: "json" });
  }
  const serverOptions = {
    run: { command, args: ["lsp"] },
    debug: { command, args: ["lsp"] },
  };
  client = new LanguageClient("verdict", "Verdict", serverOptions, { documentSelector });
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
