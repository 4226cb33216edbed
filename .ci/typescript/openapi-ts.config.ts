import { defineConfig } from "@hey-api/openapi-ts";

// The Fetch client is bundled into the output (no runtime package to install), so the
// generated directory is the whole client: an app copies it as it is.
export default defineConfig({
  input: "../../backend/openapi.json",
  output: { path: "generated/client" },
  plugins: ["@hey-api/client-fetch", "@hey-api/typescript", "@hey-api/sdk"],
  // build.sh prints failures; no crash-report files in the tree.
  logs: { file: false },
});
