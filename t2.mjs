import module from "node:module"; if (process.env.CC) module.enableCompileCache();
const t=[performance.now()];const names=[];
async function m(n){await import(n);t.push(performance.now());names.push(n)}
await m("effect/Effect"); await m("effect/Schema"); await m("effect/Graph"); await m("effect/Layer"); await m("effect/Context");
await m("effect/cli/Command"); await m("@effect/platform-node/NodeServices"); await m("@effect/platform-node/NodeRuntime");await m("yaml");
console.log(names.map((n,i)=>n+"="+(t[i+1]-t[i]).toFixed(1)).join(" "), "total", (t.at(-1)-t[0]).toFixed(0));
