/**
 * Version and build commit. scripts/build.ts injects MAILGW_BUILD_COMMIT via `--define`;
 * when run from source the commit reads "dev".
 */
import pkg from "../package.json" with { type: "json" };

declare const MAILGW_BUILD_COMMIT: string | undefined;

export const VERSION: string = pkg.version;
export const BUILD_COMMIT: string = typeof MAILGW_BUILD_COMMIT === "string" ? MAILGW_BUILD_COMMIT : "dev";
export const VERSION_STRING = `${VERSION} (${BUILD_COMMIT})`;
