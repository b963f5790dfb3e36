/**
 * The onebox policy pack: `pulumi preview --policy-pack policy` (and `up`).
 * Only wiring here; the policies and their reasons are in ./policies.ts.
 * Configure a run with `--policy-pack-config <file>` (see README "Policy pack").
 */
import { PolicyPack } from "@pulumi/policy";
import { POLICIES } from "./policies";

new PolicyPack("onebox", {
    description: "Security and reliability properties of a onebox stack that its resource graph shows (SECURITY.md).",
    policies: POLICIES,
});
