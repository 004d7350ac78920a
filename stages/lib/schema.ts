/** Small helpers for stage param schemas. */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** A field that takes `value` when the params file leaves it out. */
export const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))

/** A size in bytes written as a number or `8GB`. */
export const ByteSize = Schema.Union([Schema.Finite, Schema.String.check(Schema.isPattern(/^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$/))])

/** A number above zero (a learning rate, a norm bound). */
export const Positive = Schema.Finite.check(Schema.isGreaterThan(0))

/** A whole number of at least 1 (a batch size, a step count). */
export const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

/** A whole number of at least 0 (warm-up steps). */
export const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
