// The netdsl extension: the language server (`netdsl lsp`) for .net specs. Highlighting comes
// from syntaxes/netdsl.tmLanguage.json, declared in package.json.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("netdsl");
  const command = config.get("server.command") || "netdsl";
  client = new LanguageClient(
    "netdsl",
    "netdsl",
    { command, args: ["lsp"] },
    {
      documentSelector: [{ scheme: "file", language: "netdsl" }],
      initializationOptions: { inlayHints: config.get("inlayHints") },
    }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
