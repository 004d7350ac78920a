/**
 * A single-node Slurm cluster from Debian's packages (`slurm-wlm`, `munge`), started on loopback
 * as root for the tests: munged, slurmctld and slurmd with their own socket, ports, state and
 * spool directories under a temp dir (`ProctrackType=proctrack/linuxproc`, `TaskPlugin=task/none`,
 * `select/cons_tres`). Commands reach it through `SLURM_CONF` in `env`.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freePort, waitPort } from "./nginx.ts"

export interface Cluster {
  readonly env: Record<string, string>
  readonly partition: string
  /** lines of `squeue` (jobs queued or running) */
  readonly queue: () => Array<string>
  readonly stop: () => Promise<void>
}

export const startSlurm = async (): Promise<Cluster> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "slurm-"))
  fs.chmodSync(dir, 0o700)
  for (const d of ["state", "spool", "log"]) fs.mkdirSync(path.join(dir, d))
  fs.writeFileSync(path.join(dir, "munge.key"), randomBytes(1024), { mode: 0o400 })
  const host = os.hostname().split(".")[0]!
  const [ctld, slurmd] = [await freePort(), await freePort()]
  const conf = path.join(dir, "slurm.conf")
  const cpus = os.cpus().length
  const memMB = Math.floor((os.totalmem() / 1024 / 1024) * 0.8)
  fs.writeFileSync(
    conf,
    [
      "ClusterName=test",
      `SlurmctldHost=${host}`,
      `SlurmctldPort=${ctld}`,
      `SlurmdPort=${slurmd}`,
      "AuthType=auth/munge",
      `AuthInfo=socket=${dir}/munge.sock`,
      "CredType=cred/munge",
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/ctld.pid`,
      `SlurmdPidFile=${dir}/d.pid`,
      `SlurmctldLogFile=${dir}/log/ctld.log`,
      `SlurmdLogFile=${dir}/log/d.log`,
      "SlurmUser=root",
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core_Memory",
      "ReturnToService=2",
      // a cancelled job's processes get SIGTERM, then SIGKILL after KillWait (default 30 s): short here
      "KillWait=5",
      "MpiDefault=none",
      "JobCompType=jobcomp/none",
      "AccountingStorageType=accounting_storage/none",
      `NodeName=${host} CPUs=${cpus} RealMemory=${memMB} State=UNKNOWN`,
      `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
      ""
    ].join("\n")
  )
  const munge = spawnSync("munged", [`--socket=${dir}/munge.sock`, `--key-file=${dir}/munge.key`, `--pid-file=${dir}/munged.pid`, `--log-file=${dir}/log/munged.log`, `--seed-file=${dir}/munge.seed`, "--force"])
  if (munge.status !== 0) throw new Error(`munged: ${munge.stderr}`)
  const env = { SLURM_CONF: conf }
  const daemons: Array<ChildProcess> = [
    spawn("slurmctld", ["-D", "-f", conf], { stdio: "ignore", env: { ...process.env, ...env } }),
    spawn("slurmd", ["-D", "-f", conf], { stdio: "ignore", env: { ...process.env, ...env } })
  ]
  await waitPort(ctld)
  await waitPort(slurmd)
  // the node reports in within a second or two
  for (let i = 0; i < 100; i++) {
    const s = spawnSync("sinfo", ["-h", "-o", "%T"], { env: { ...process.env, ...env }, encoding: "utf8" })
    if (/idle|mixed|allocated/.test(s.stdout)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    env,
    partition: "debug",
    queue: () => spawnSync("squeue", ["-h"], { env: { ...process.env, ...env }, encoding: "utf8" }).stdout.split("\n").filter((l) => l.trim() !== ""),
    stop: async () => {
      for (const d of daemons) d.kill("SIGKILL")
      const pid = Number(fs.readFileSync(path.join(dir, "munged.pid"), "utf8").trim())
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        /* gone */
      }
      await new Promise((r) => setTimeout(r, 100))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
