// TypeDoc for `make docs` (tools/docs/build_docs.py adds --out): the TypeScript client's
// public API, from its entry point and with its own tsconfig. Any warning fails the build,
// including the validations: a broken {@link}, and a type the public API uses but the
// package does not export (a user could not name it).
import { OptionDefaults } from "typedoc";

/** @type {Partial<import("typedoc").TypeDocOptions>} */
export default {
  name: "@session-memory/client",
  entryPoints: ["../../clients/typescript/src/index.ts"],
  tsconfig: "../../clients/typescript/tsconfig.json",
  readme: "none",
  excludePrivate: true,
  excludeInternal: true,
  // No public repository to link "Defined in" to (TypeDoc would warn that the git remote
  // is not one it knows).
  disableSources: true,
  // protoc-gen-es marks the generated code it writes with `@generated from ...`.
  blockTags: [...OptionDefaults.blockTags, "@generated"],
  treatWarningsAsErrors: true,
  treatValidationWarningsAsErrors: true,
  validation: {
    notExported: true,
    invalidLink: true,
    rewrittenLink: true,
    unusedMergeModuleWith: true,
    // Off for now: the result interfaces' fields (types.ts) have no comments of their own.
    notDocumented: false,
  },
};
