/** Small helpers for stage param schemas. */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** A field that takes `value` when the params file leaves it out. */
export const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))

/** A size in bytes written as a number or `8GB`. */
export const ByteSize = Schema.Union([Schema.Finite, Schema.String.check(Schema.isPattern(/^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$/))])
