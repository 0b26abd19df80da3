/**
 * The package as npm sees it, without a server: every locked dependency runs on the
 * oldest Node the package claims (so `npm ci` prints no EBADENGINE there), and the
 * package's `exports` serve both `import` (dist/esm) and `require` (dist/cjs).
 * `npm test` builds both before it runs this. Installing the packed tarball into a
 * scratch project is tests/integration/test_typescript_package.py.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const readJson = (name: string) => JSON.parse(readFileSync(path.join(packageDir, name), "utf8")) as Record<string, any>;

type Version = [number, number, number];
/** A comparator's version: missing parts (`20`, `20.x`) are undefined. */
type Partial3 = [number | undefined, number | undefined, number | undefined];

function partial(text: string, range: string): Partial3 {
  const parts = text.replace(/^v/, "").split(".");
  if (parts.length > 3) throw new Error(`cannot read the version '${text}' in the range '${range}'`);
  const nums = [0, 1, 2].map((i) => {
    const part = parts[i];
    if (part === undefined || part === "x" || part === "X" || part === "*") return undefined;
    if (!/^\d+$/.test(part)) throw new Error(`cannot read the version '${text}' in the range '${range}'`);
    return Number(part);
  });
  return nums as Partial3;
}

const compare = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
const filled = (p: Partial3): Version => [p[0] ?? 0, p[1] ?? 0, p[2] ?? 0];
/** The first version after every version `p` stands for (`20` -> 21.0.0, `20.1` -> 20.2.0). */
function after(p: Partial3): Version | undefined {
  if (p[0] === undefined) return undefined;
  if (p[1] === undefined) return [p[0] + 1, 0, 0];
  if (p[2] === undefined) return [p[0], p[1] + 1, 0];
  return [p[0], p[1], p[2] + 1];
}

/** Whether `version` satisfies one comparator (`>=20`, `^18.14.1`, `~2.1`, `20.x`, ...). */
function satisfiesComparator(version: Version, comparator: string, range: string): boolean {
  const match = /^(>=|<=|>|<|=|\^|~)?\s*(.*)$/.exec(comparator)!;
  const op = match[1] ?? "";
  const p = partial(match[2]!, range);
  const low = filled(p);
  const high = after(p);
  const below = (limit: Version | undefined) => limit === undefined || compare(version, limit) < 0;
  switch (op) {
    case ">=":
      return compare(version, low) >= 0;
    case ">":
      return high === undefined ? false : compare(version, high) >= 0;
    case "<":
      return compare(version, low) < 0;
    case "<=":
      return below(high);
    case "^": {
      const limit: Version = low[0] > 0 || p[1] === undefined ? [low[0] + 1, 0, 0] : low[1] > 0 || p[2] === undefined ? [0, low[1] + 1, 0] : [0, 0, low[2] + 1];
      return compare(version, low) >= 0 && compare(version, limit) < 0;
    }
    case "~": {
      const limit: Version = p[1] === undefined ? [low[0] + 1, 0, 0] : [low[0], low[1] + 1, 0];
      return compare(version, low) >= 0 && compare(version, limit) < 0;
    }
    default:
      return compare(version, low) >= 0 && below(high);
  }
}

/** Whether `version` satisfies an npm range (`||` of space-separated comparators, `a - b`). */
export function satisfies(version: Version, range: string): boolean {
  return range.split("||").some((alternative) => {
    const text = alternative.trim().replace(/\s+-\s+/, " HYPHEN ");
    if (text.includes(" HYPHEN ")) {
      const [from, to] = text.split(" HYPHEN ") as [string, string];
      return satisfiesComparator(version, `>=${from}`, range) && satisfiesComparator(version, `<=${to}`, range);
    }
    const comparators = text.replace(/(>=|<=|>|<|=|\^|~)\s+/g, "$1").split(/\s+/).filter((c) => c && c !== "*");
    return comparators.every((c) => satisfiesComparator(version, c, range));
  });
}

/** The oldest Node the package claims: `engines.node` must be `>=X[.Y[.Z]]`. */
function oldestNode(): Version {
  const claim = readJson("package.json").engines?.node as string | undefined;
  const match = claim === undefined ? null : /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(claim.trim());
  assert.ok(match, `package.json engines.node should be ">=X" (the oldest Node supported), not ${JSON.stringify(claim)}`);
  return filled(partial(match[1]!, claim!));
}

test("the range reader agrees with npm on the forms the lock uses", () => {
  const cases: [string, Version, boolean][] = [
    [">=20", [20, 0, 0], true],
    [">=22", [20, 20, 2], false],
    [">=18.14.1", [20, 0, 0], true],
    ["^18.14.1 || >=20", [18, 20, 0], true],
    ["^18.14.1 || >=20", [19, 0, 0], false],
    ["^20.10.0 || >=22", [20, 0, 0], false],
    ["^20 || ^22", [21, 0, 0], false],
    ["~20.1", [20, 1, 9], true],
    ["~20.1", [20, 2, 0], false],
    ["20.x", [20, 5, 0], true],
    ["18 - 20", [20, 9, 0], true],
    ["18 - 20", [21, 0, 0], false],
    [">20", [20, 9, 9], false],
    ["<=20", [20, 9, 9], true],
    ["*", [20, 0, 0], true],
  ];
  for (const [range, version, expected] of cases) {
    assert.equal(satisfies(version, range), expected, `${version.join(".")} in '${range}'`);
  }
});

test("every locked dependency runs on the oldest Node the package claims (no EBADENGINE)", () => {
  const oldest = oldestNode();
  const lock = readJson("package-lock.json");
  const refused: string[] = [];
  for (const [location, entry] of Object.entries(lock.packages as Record<string, Record<string, any>>)) {
    if (location === "") continue;
    const node = entry.engines?.node as unknown;
    if (node === undefined) continue;
    assert.equal(typeof node, "string", `${location}: engines.node is ${JSON.stringify(node)}, not a range`);
    if (!satisfies(oldest, node as string)) {
      refused.push(`${location.replace(/^.*node_modules\//, "")}@${entry.version} (${entry.dev ? "dev" : "runtime"}) needs Node ${node}`);
    }
  }
  assert.deepEqual(refused, [], `package.json claims Node ${oldest.join(".")} but:\n${refused.join("\n")}`);
});

test("the package imports as ES module and requires as CommonJS, each from its own build", async () => {
  const name = readJson("package.json").name as string;
  const esm = (await import(name)) as typeof import("../src/index.js");
  const cjs = createRequire(import.meta.url)(name) as typeof import("../src/index.js");
  const resolved = createRequire(import.meta.url).resolve(name);
  assert.equal(path.relative(packageDir, resolved), path.join("dist", "cjs", "index.js"));
  assert.equal(readJson("dist/cjs/package.json").type, "commonjs");
  for (const [label, module] of [["import", esm], ["require", cjs]] as const) {
    const memory = new module.MemoryClient("localhost:1").session("s");
    assert.equal(memory.available, false, label);
    await assert.rejects(memory.get("k"), module.MemoryUnavailableError, label);
  }
  // Two builds, two classes: the dual-package hazard the README warns about.
  assert.notEqual(esm.MemoryClient, cjs.MemoryClient);
});
