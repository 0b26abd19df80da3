/**
 * Cross-language round trip helper (driven by tests/integration/test_cross_language.py):
 *   node dist/tools/xlang.js write ADDR API_KEY SESSION LANG
 *   node dist/tools/xlang.js read ADDR API_KEY SESSION LANG...
 */
import { createHash } from "node:crypto";
import { MemoryClient } from "../src/index.js";

const [mode, address, apiKey, sessionId, ...langs] = process.argv.slice(2);
const memory = new MemoryClient(address!, { apiKey: apiKey! }).session(sessionId!);

const text = (lang: string) => `héllo ✓ 😀 from ${lang}`;
const doc = (lang: string) => ({ lang, items: [1, 2.5, "x"], nested: { ok: true } });
const file = (lang: string) => Buffer.from("%PDF-1.4\n" + `${lang}\n`.repeat(5000));

if (mode === "write") {
  const lang = langs[0]!;
  await memory.set(`${lang}_text`, text(lang), 600);
  await memory.setJson(`${lang}_json`, doc(lang), 600);
  await memory.setFile(`${lang}_file`, file(lang), 600, "application/pdf");
} else {
  const out: Record<string, unknown> = {};
  for (const lang of langs) {
    out[`${lang}_text`] = await memory.get(`${lang}_text`);
    out[`${lang}_json`] = await memory.getJson(`${lang}_json`);
    const fh = await memory.getFile(`${lang}_file`);
    const raw = fh ? await fh.toRaw() : Buffer.alloc(0);
    out[`${lang}_file`] = { mime: fh?.info.mimeType, sha256: createHash("sha256").update(raw).digest("hex") };
  }
  process.stdout.write(JSON.stringify(out));
}
