/**
 * A strict RFC 4180 CSV reader: quoted fields may hold commas, newlines and
 * doubled quotes; a stray quote or an unterminated field is an error with its
 * line number. Records carry the line they start on, for error reports.
 */
export interface CsvRecord {
  readonly line: number
  readonly fields: ReadonlyArray<string>
}

export class CsvError extends Error {}

export const parse = (text: string): Array<CsvRecord> => {
  const out: Array<CsvRecord> = []
  let i = 0
  let line = 1
  const n = text.length
  if (text.charCodeAt(0) === 0xfeff) i = 1
  while (i < n) {
    const start = line
    const fields: Array<string> = []
    for (;;) {
      let value = ""
      if (text[i] === '"') {
        i++
        for (;;) {
          if (i >= n) throw new CsvError(`line ${start}: unterminated quoted field`)
          const c = text[i]!
          if (c === '"') {
            if (text[i + 1] === '"') {
              value += '"'
              i += 2
            } else {
              i++
              break
            }
          } else {
            if (c === "\n") line++
            value += c
            i++
          }
        }
        if (i < n && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") throw new CsvError(`line ${line}: unexpected character after a quoted field`)
      } else {
        const s = i
        while (i < n && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          if (text[i] === '"') throw new CsvError(`line ${line}: quote inside an unquoted field`)
          i++
        }
        value = text.slice(s, i)
      }
      fields.push(value)
      if (text[i] === ",") {
        i++
        continue
      }
      if (text[i] === "\r") i++
      if (text[i] === "\n") {
        i++
        line++
      }
      break
    }
    if (!(fields.length === 1 && fields[0] === "")) out.push({ line: start, fields })
  }
  return out
}
