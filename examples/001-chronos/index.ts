// The onebox program (the repository's index.ts), run with this directory's stack files:
// Pulumi runs a project's program in its own directory, so `Pulumi.<stack>.yaml` is read
// from here. Copied elsewhere in the repository, adjust the relative path; README.md of
// this example says how to copy it into your own project.
export * from "../../index";
