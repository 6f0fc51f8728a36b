// Path helpers shared by modules that must not import node:url/node:path eagerly.
export { dirname } from "node:path";
export { fileURLToPath as fromFileUrl } from "node:url";
