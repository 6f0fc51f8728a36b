// Bumped by the release workflow; the git commit is filled in at build time where available.
export const VERSION = "0.1.0";
