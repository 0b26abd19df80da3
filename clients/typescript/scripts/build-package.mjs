// The package's build (`npm run build:package`, run by `prepack`): ES modules in
// dist/esm and CommonJS in dist/cjs (marked so by its own package.json), each
// with its .d.ts files; no source maps, as the package ships no sources.
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
for (const dir of ["dist/esm", "dist/cjs"]) rmSync(new URL(`../${dir}`, import.meta.url), { recursive: true, force: true });
for (const project of ["tsconfig.build.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", project], { cwd: root, stdio: "inherit" });
}
writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{ "type": "commonjs" }\n');
