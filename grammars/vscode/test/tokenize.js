// Tokenize .net files with the engine VS Code uses (vscode-textmate over vscode-oniguruma)
// and print, per file, every token as [line, text, scopes] in JSON (tests/test_textmate.py).
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const wasm = fs.readFileSync(
  path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm")
).buffer;
const onigLib = oniguruma.loadWASM(wasm).then(() => ({
  createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
  createOnigString: (s) => new oniguruma.OnigString(s),
}));
const registry = new vsctm.Registry({
  onigLib,
  loadGrammar: async () =>
    vsctm.parseRawGrammar(
      fs.readFileSync(path.join(__dirname, "..", "syntaxes", "netdsl.tmLanguage.json"), "utf8"),
      "netdsl.tmLanguage.json"
    ),
});

registry.loadGrammar("source.netdsl").then((grammar) => {
  const out = {};
  for (const file of process.argv.slice(2)) {
    const tokens = [];
    let stack = vsctm.INITIAL;
    fs.readFileSync(file, "utf8").split("\n").forEach((line, n) => {
      const r = grammar.tokenizeLine(line, stack);
      for (const t of r.tokens) {
        tokens.push([n + 1, line.substring(t.startIndex, t.endIndex), t.scopes]);
      }
      stack = r.ruleStack;
    });
    out[file] = tokens;
  }
  process.stdout.write(JSON.stringify(out));
});
