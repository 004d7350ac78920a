/**
 * The train stage's params and the protocol between the stage and its worker
 * (stages/lib/worker.ts): the job the stage writes and the worker decodes, and
 * the events the worker prints, one JSON line each, that the stage decodes.
 *
 * The trainer's config is the `train` section minus what only the stage reads
 * (device and precision choose the backend): one list of fields, two schemas,
 * no hand copy to drift.
 */
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import { PROJECTIONS } from "../../native/qwen3.ts"
import { Count, NonNegativeInt, Positive, withDefault } from "../lib/schema.ts"

export const LoraParams = Schema.Struct({
  r: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1024 })), 16),
  alpha: withDefault(Positive, 16),
  dropout: withDefault(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThan(1)), 0.05),
  targets: withDefault(Schema.Array(Schema.Literals(PROJECTIONS)).check(Schema.isMinLength(1), Schema.isUnique()), [...PROJECTIONS])
})
export type LoraConfig = typeof LoraParams.Type

/**
 * Every value is checked where it is read, so a run that cannot make sense
 * (batchSize 0 "trains" at loss 0; a negative lr climbs the loss) fails when
 * the params are decoded, before anything runs, with exit 2.
 */
const trainerFields = {
  lr: withDefault(Positive.check(Schema.isLessThanOrEqualTo(1)), 1e-3),
  epochs: withDefault(Positive.check(Schema.isLessThanOrEqualTo(1000)), 1),
  maxSteps: Schema.optionalKey(Count),
  batchSize: withDefault(Count.check(Schema.isLessThanOrEqualTo(4096)), 2),
  gradAccum: withDefault(Count.check(Schema.isLessThanOrEqualTo(4096)), 1),
  warmupSteps: withDefault(NonNegativeInt, 4),
  scheduler: withDefault(Schema.Literals(["cosine", "linear", "constant"]), "cosine"),
  weightDecay: withDefault(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })), 0),
  maxGradNorm: withDefault(Positive, 1),
  seed: withDefault(Schema.Int, 42),
  evalEvery: withDefault(Count, 10),
  checkpointEvery: withDefault(Count, 10),
  keepCheckpoints: withDefault(Count, 2),
  /** recompute each layer in the backward pass instead of keeping its activations (less memory, ~1/3 more compute) */
  activationCheckpointing: withDefault(Schema.Boolean, false),
  /** validation sequences per evaluation */
  evalSamples: withDefault(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 100000 })), 8)
}

/** What the training loop reads. */
export const TrainConfig = Schema.Struct(trainerFields)
export type TrainConfig = typeof TrainConfig.Type

/** The `train` section: the trainer's config and the backend. */
export const TrainParams = Schema.Struct({
  device: withDefault(Schema.Literals(["cpu", "cuda"]), "cpu"),
  /** the operand type: fp32 (cpu), fp16 (cuda, any GPU from sm_75) or bf16 (cuda, sm_80+) */
  precision: withDefault(Schema.Literals(["fp32", "fp16", "bf16"]), "fp32"),
  ...trainerFields
})

/** The job the stage hands the worker. */
export const Job = Schema.Struct({
  modelDir: Schema.String,
  trainBin: Schema.String,
  valBin: Schema.String,
  adapterDir: Schema.String,
  metricsFile: Schema.String,
  scratch: Schema.String,
  t: TrainConfig,
  lora: LoraParams,
  device: Schema.Literals(["cpu", "cuda"]),
  precision: Schema.Literals(["fp32", "fp16", "bf16"]),
  /** stop after this many steps (tests of resume) */
  stopAfter: Schema.optionalKey(Count)
})
export type Job = typeof Job.Type

// JSON has no NaN or Infinity: a non-finite loss or norm (a skipped step) travels as null
const Measured = Schema.NullOr(Schema.Number).pipe(
  Schema.decodeTo(Schema.Number, SchemaTransformation.transform({ decode: (n: number | null) => n ?? NaN, encode: (n: number) => (Number.isFinite(n) ? n : null) }))
)

/** One line of the worker's output. */
export const TrainEvent = Schema.Union([
  Schema.Struct({
    type: Schema.Literal("start"),
    totalSteps: Schema.Int,
    params: Schema.String,
    resumedFrom: Schema.NullOr(Schema.Int),
    trainSequences: Schema.Int,
    /** the backend and device the steps run on (backend.ts `describe`) */
    device: Schema.String
  }),
  Schema.Struct({
    type: Schema.Literal("step"),
    step: Schema.Int,
    loss: Measured,
    lr: Schema.Number,
    gradNorm: Measured,
    tokens: Schema.Int,
    tokensPerSecond: Schema.Number,
    skipped: Schema.Boolean,
    scale: Schema.Number
  }),
  Schema.Struct({ type: Schema.Literal("eval"), step: Schema.Int, valLoss: Measured, best: Schema.Boolean }),
  Schema.Struct({ type: Schema.Literal("checkpoint"), step: Schema.Int }),
  /** the base's layers read (and, for cuda, quantized to NF4) so far, before training starts */
  Schema.Struct({ type: Schema.Literal("loading"), done: Schema.Int, total: Schema.Int }),
  Schema.Struct({ type: Schema.Literal("done"), step: Schema.Int, bestVal: Schema.NullOr(Schema.Number) }),
  Schema.Struct({ type: Schema.Literal("warning"), message: Schema.String })
])
export type TrainEvent = typeof TrainEvent.Type

export const protocol = { job: Job, events: TrainEvent }
