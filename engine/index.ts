/** The engine's public API: define stages, hand them to `main`. */
export * as Stage from "./Stage.ts"
export * as CommandStage from "./CommandStage.ts"
export * as Planner from "./Planner.ts"
export * as Executor from "./Executor.ts"
export * as Dag from "./Dag.ts"
export * as Errors from "./Errors.ts"
export * as Units from "./Units.ts"
export * as Digest from "../cache/Digest.ts"
export { Workspace } from "./Workspace.ts"
export { main, run } from "./Cli.ts"
export { StageError } from "./Errors.ts"
export type { Progress } from "./Progress.ts"
export { ChildProcesses } from "./Services.ts"
// Re-exported so stage modules need only the engine import.
export * as Effect from "effect/Effect"
export * as Schema from "effect/Schema"
// Remote stores shared by the publish targets and the remote cache.
export * as S3 from "../cache/S3.ts"
