import { defineCommand } from "citty";
import { VERSION_STRING } from "../version.ts";
import { cliAction } from "./action.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version and build commit" },
  run: cliAction(() => {
    console.log(`mailgw ${VERSION_STRING}`);
  }),
});
