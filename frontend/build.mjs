// Builds the IOC dashboard into src/sencity/web/static/build/ (app.js, app.css).
// Run through `make web` (or `npm run build` here).
import * as esbuild from "esbuild";
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "../src/sencity/web/static/build");
rmSync(outdir, { recursive: true, force: true });
await esbuild.build({
  entryPoints: { app: path.join(here, "src/main.js") },
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "iife",
  target: ["chrome110", "firefox115", "safari16"],
  outdir,
  legalComments: "linked",
  logLevel: "warning",
});
console.log(`built ${path.relative(process.cwd(), outdir)}`);
