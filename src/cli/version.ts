import { defineCommand } from "citty";
import { VERSION_STRING } from "../version.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version and build commit" },
  run() {
    console.log(`mailgw ${VERSION_STRING}`);
  },
});
