/**
 * Runs the pack's policies the way the analyzer does, on constructed
 * resources: `validateResource` with ResourceValidationArgs, `validateStack`
 * with PolicyResources, collecting every reported violation.
 */
import type { PolicyResource, PolicyResourceOptions, ResourceValidationArgs, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import type { OneboxPolicyConfig } from "../../../policy/policies";

export interface Fake {
    type: string;
    name?: string;
    props: Record<string, unknown>;
    opts?: Partial<PolicyResourceOptions>;
    /** Stack in the URN. @default "prod" */
    stack?: string;
    /** Property name -> names of the fakes it depends on (stack policies). */
    deps?: Record<string, string[]>;
}

function options(o: Partial<PolicyResourceOptions> = {}): PolicyResourceOptions {
    return {
        protect: false,
        ignoreChanges: [],
        aliases: [],
        customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
        additionalSecretOutputs: [],
        ...o,
    };
}

const urnOf = (f: Fake, i: number) => `urn:pulumi:${f.stack ?? "prod"}::onebox::${f.type}::${f.name ?? `r${i}`}`;

function resourceArgs(f: Fake, config: OneboxPolicyConfig, i = 0): ResourceValidationArgs {
    return {
        type: f.type,
        props: f.props,
        urn: urnOf(f, i),
        name: f.name ?? `r${i}`,
        opts: options(f.opts),
        stackTags: new Map(),
        isType: () => false,
        asType: () => undefined,
        getConfig: <T extends object>() => config as T,
        notApplicable: (reason?: string): never => {
            throw new Error(`not applicable: ${reason ?? ""}`);
        },
    };
}

/** PolicyResources of a stack, with property dependencies resolved by name. */
export function policyResources(fakes: Fake[]): PolicyResource[] {
    const out: PolicyResource[] = fakes.map((f, i) => ({
        type: f.type,
        name: f.name ?? `r${i}`,
        urn: urnOf(f, i),
        props: f.props,
        opts: options(f.opts),
        dependencies: [],
        propertyDependencies: {},
        isType: () => false,
        asType: () => undefined,
    }));
    fakes.forEach((f, i) => {
        for (const [prop, names] of Object.entries(f.deps ?? {})) {
            out[i].propertyDependencies[prop] = names.map((n) => {
                const dep = out.find((r) => r.name === n);
                if (!dep) throw new Error(`no fake named ${n}`);
                return dep;
            });
            out[i].dependencies.push(...out[i].propertyDependencies[prop]);
        }
    });
    return out;
}

/** Every violation the policy reports for these resources (each resource alone, or the stack). */
export async function violations(policy: ResourceValidationPolicy | StackValidationPolicy, fakes: Fake[], config: OneboxPolicyConfig = {}): Promise<string[]> {
    const found: string[] = [];
    const report = (message: string) => {
        found.push(message);
    };
    if ("validateStack" in policy) {
        await policy.validateStack({ resources: policyResources(fakes), stackTags: new Map(), getConfig: <T extends object>() => config as T, notApplicable: () => { throw new Error("n/a"); } }, report);
        return found;
    }
    const validations = [policy.validateResource ?? []].flat();
    for (const [i, f] of fakes.entries()) {
        for (const v of validations) {
            await v(resourceArgs(f, config, i), report);
        }
    }
    return found;
}
