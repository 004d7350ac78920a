/**
 * Expected failures, as a closed set of tagged errors. Each renders as one line
 * and maps to the CLI's exit code; anything else is a bug and is reported as
 * such at the CLI boundary.
 */
import * as Schema from "effect/Schema"

/** A params file, `--set`, or the pipeline definition is wrong. Exit 2. */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  message: Schema.String
}) {}

/** The command line is wrong (unknown target, bad flag value). Exit 2. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

/** The pipeline's graph is invalid: a cycle, a dangling reference, a duplicate name. Exit 2. */
export class GraphError extends Schema.TaggedError<GraphError>()("GraphError", {
  message: Schema.String
}) {}

/** The plan does not fit on disk or in the budget. Exit 3, before any stage starts. */
export class DiskBudgetError extends Schema.TaggedError<DiskBudgetError>()("DiskBudgetError", {
  message: Schema.String,
  stage: Schema.String,
  neededBytes: Schema.Number,
  availableBytes: Schema.Number,
  fits: Schema.Array(Schema.String)
}) {}

/** Another run holds the workspace. Exit 3. */
export class WorkspaceLockedError extends Schema.TaggedError<WorkspaceLockedError>()("WorkspaceLockedError", {
  message: Schema.String
}) {}

/** What a stage's own code fails with. */
export class StageError extends Schema.TaggedError<StageError>()("StageError", {
  message: Schema.String
}) {}

/** A stage failed during a run. Exit 1. */
export class StageFailed extends Schema.TaggedError<StageFailed>()("StageFailed", {
  stage: Schema.String,
  message: Schema.String
}) {}

/** The lock is stale (`status --ci`). Exit 4. */
export class StaleLockError extends Schema.TaggedError<StaleLockError>()("StaleLockError", {
  message: Schema.String
}) {}

/** `verify` found damaged objects. Exit 1. */
export class CorruptCacheError extends Schema.TaggedError<CorruptCacheError>()("CorruptCacheError", {
  message: Schema.String
}) {}

/** `push` or `pull` could not talk to the remote, or it held something bad. Exit 1. */
export class RemoteFailed extends Schema.TaggedError<RemoteFailed>()("RemoteFailed", {
  message: Schema.String
}) {}

export type PipelineError =
  | ConfigError
  | UsageError
  | GraphError
  | DiskBudgetError
  | WorkspaceLockedError
  | StageFailed
  | StaleLockError
  | CorruptCacheError
  | RemoteFailed

export const exitCode = (e: PipelineError): number => {
  switch (e._tag) {
    case "ConfigError":
    case "UsageError":
    case "GraphError":
      return 2
    case "DiskBudgetError":
    case "WorkspaceLockedError":
      return 3
    case "StaleLockError":
      return 4
    case "StageFailed":
    case "CorruptCacheError":
    case "RemoteFailed":
      return 1
  }
}

export const render = (e: PipelineError): string => {
  switch (e._tag) {
    case "StageFailed":
      return `stage ${e.stage} failed: ${e.message}`
    default:
      return e.message
  }
}

/** Wraps an unknown thrown value from a stage body into a StageError with a one-line message. */
export const stageErrorFrom = (u: unknown): StageError =>
  u instanceof StageError ? u : new StageError({ message: u instanceof Error ? u.message : String(u) })
