import type { FastifyInstance } from "fastify";

import { ArborError } from "../../errors/index.ts";
import type { RootProvider, RootState } from "../../root/types.ts";
import { routeMeta } from "../route-config.ts";

/**
 * Rejects every route not marked `whileSealed` with 503 SEALED (or NOT_INITIALIZED,
 * ROOT_UNAVAILABLE) until the root is unsealed. It runs before authentication, so these requests
 * get no audit event: nothing was attempted and no principal is known yet.
 */
export function registerSealedGuard(
  app: FastifyInstance,
  root: Pick<RootProvider, "status">,
): void {
  app.addHook("onRequest", (request, _reply, done) => {
    const meta = routeMeta(request.routeOptions.config);
    const state = meta === undefined || meta.whileSealed === true ? null : root.status().state;
    if (state === null || state === "unsealed") {
      done();
      return;
    }
    request.auditState.settled = true;
    done(unavailableError(state));
  });
}

function unavailableError(state: Exclude<RootState, "unsealed">): ArborError {
  switch (state) {
    case "uninitialized":
      return new ArborError(
        "NOT_INITIALIZED",
        "Arbor is not initialised: call POST /v1/sys/init, then unseal it",
      );
    case "sealed":
      return new ArborError(
        "SEALED",
        "Arbor is sealed: unseal it with unseal shares or the HSM PIN (POST /v1/sys/unseal)",
      );
    case "unavailable":
      return new ArborError(
        "ROOT_UNAVAILABLE",
        "the root of trust is unavailable; retry later and check the root provider",
      );
  }
}
