#!/usr/bin/env node
// The `arbor` executable. It runs the TypeScript sources through tsx's module loader, so
// `npx arbor` works in a clone right after `npm ci`, without a build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
