import { GroupCommitter } from "./src/audit/group-commit.ts";
import { createSqlAuditWriter } from "./src/audit/sql-writer.ts";
import { dialects } from "./test/helpers/dialects.ts";
import { openTree } from "./test/helpers/tree.ts";
const h = await openTree(dialects[0]!);
await h.tree.createKey("prod");
await h.tree.createKey("prod/app:encrypt");
const key = await h.tree.resolveKey("prod/app:encrypt");
const writer = createSqlAuditWriter(new GroupCommitter(h.storage));
let n = 0;
const ev = () => ({ type: "data_key.issued", outcome: "success", at: Date.now(), principal: { type: "service", id: "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa" }, sourceAddress: "127.0.0.1", requestId: `req-${n}`, keyId: key.id, keyVersion: 1, chain: ["root@1","key_bbbbbbbbbbbbbbbbbbbbbbbbbb@1","key_cccccccccccccccccccccccccc@1","key_aaaaaaaaaaaaaaaaaaaaaaaaaa@1"], credentialId: `dk_${n++}_aaaaaaaaaaaaaaaaaaaaaaaa`, errorCode: null, details: { action: "token.issue", expiresAt: Date.now()+900000, clientId: "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa", audience: "https://billing.example", scope: null } }) as any;
const C = Number(process.env.C ?? 32);
async function run(ms: number) {
  const end = performance.now() + ms; let count = 0;
  await Promise.all(Array.from({ length: C }, async () => { while (performance.now() < end) { await writer.write(ev()); count++; } }));
  return count;
}
await run(1000);
const res = [];
for (let r = 0; r < 3; r++) {
  const c0 = process.cpuUsage(); const t0 = performance.now();
  const count = await run(3000);
  const c1 = process.cpuUsage(); const t1 = performance.now();
  res.push(`${((c1.user + c1.system - c0.user - c0.system) / count).toFixed(1)}us cpu/ev (${(count / (t1 - t0) * 1000).toFixed(0)}/s)`);
}
console.log(`stage=${process.env.EXP_STAGE ?? "-"} chunk=${process.env.EXP_CHUNK ?? "-"} C=${C}: ${res.join(", ")}`);
await h.close();
