import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    globalSetup: ["tests/setup/build-native.ts", "tests/setup/tmpdir.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2,
    // In CI the results also go to a JSON file, from which .ci/run prints its closing line.
    reporters: process.env["CI"] === "true" ? ["default", "json"] : ["default"],
    outputFile: process.env["CI"] === "true" ? { json: ".ci/results.json" } : {}
  }
})
