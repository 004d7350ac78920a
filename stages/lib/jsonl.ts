import * as fs from "node:fs"

export const readJsonl = <A>(file: string): Array<A> =>
  fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as A)

export const writeJsonl = (file: string, rows: ReadonlyArray<unknown>): void =>
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : ""))
