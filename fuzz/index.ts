/**
 * `npm run fuzz`: the adversarial checks that are too slow for the test suite.
 *
 *   inputs  about a hundred bad inputs through the CLI (fuzz/inputs.ts), ~3 min
 *   kills   kill -9 at random moments across the stages, each followed by an
 *           immediate rerun, then verify and a comparison with a clean run
 *           (fuzz/kills.ts), ~10 min for 50 kills
 *
 * `npm run fuzz -- kills 80 7` runs 80 kills with seed 7. Exits 1 on any violation.
 */
import { inputFuzz } from "./inputs.ts"
import { killFuzz } from "./kills.ts"

const [which, n, seed] = process.argv.slice(2)
let code = 0
if (which === undefined || which === "inputs") code |= await inputFuzz()
if (which === undefined || which === "kills") code |= await killFuzz(n ? Number(n) : 50, seed ? Number(seed) : 11)
process.exitCode = code
