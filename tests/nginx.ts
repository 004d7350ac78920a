/**
 * nginx (Debian's package) serving WebDAV PUT on loopback, for the HTTP remote
 * cache's tests and benchmark: one process (`master_process off`, so a kill is
 * a kill), run as root with its files in a 0700 temp dir (DESIGN.md: else every
 * request is 403/500), data under `data/`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer()
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

export const waitPort = async (port: number) => {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => (c.destroy(), resolve(true)))
      c.on("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`nothing listens on ${port}`)
}

export interface Nginx {
  readonly port: number
  /** what nginx serves: `http://127.0.0.1:<port>/<rel>` is `<data>/<rel>` */
  readonly data: string
  readonly start: () => Promise<void>
  /** SIGKILL, mid-request if one is running */
  readonly stop: () => Promise<void>
  /** stops it and removes its files */
  readonly dispose: () => Promise<void>
}

export const startNginx = async (): Promise<Nginx> => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "nginx-"))
  fs.chmodSync(prefix, 0o700)
  const data = path.join(prefix, "data")
  fs.mkdirSync(data)
  fs.mkdirSync(path.join(prefix, "body"))
  const port = await freePort()
  fs.writeFileSync(
    path.join(prefix, "nginx.conf"),
    `user root;
daemon off;
master_process off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path ${prefix}/body;
  server {
    listen 127.0.0.1:${port};
    root ${data};
    location / {
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;
      client_max_body_size 0;
    }
  }
}
`
  )
  let child: ChildProcess | undefined
  const start = async () => {
    child = spawn("nginx", ["-c", path.join(prefix, "nginx.conf"), "-p", prefix], { stdio: "ignore" })
    await waitPort(port)
  }
  await start()
  const stop = async () => {
    const c = child!
    c.kill("SIGKILL")
    if (c.exitCode === null && c.signalCode === null) await new Promise((r) => c.once("exit", r))
  }
  return {
    port,
    data,
    start,
    stop,
    dispose: async () => {
      await stop()
      fs.rmSync(prefix, { recursive: true, force: true })
    }
  }
}
