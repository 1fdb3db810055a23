// Parse an AsyncAPI document (stdin) with the official @asyncapi/parser and print its
// diagnostics as JSON, one object per line; exit 1 when any is an error.
const { Parser } = require("@asyncapi/parser");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const { document, diagnostics } = await new Parser().parse(Buffer.concat(chunks).toString());
  for (const d of diagnostics) {
    console.log(JSON.stringify({ severity: d.severity, code: d.code, path: d.path, message: d.message }));
  }
  // Severity 0 is an error; a document with errors is not returned at all.
  process.exit(document && !diagnostics.some((d) => d.severity === 0) ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
