/**
 * One configuration reference: every setting the schema knows is named in
 * README's configuration table and in Pulumi.yaml's `template.config`
 * descriptions (what `pulumi new` shows). The field lists are read off the zod
 * schema itself, so a new setting without documentation fails here.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { z } from "zod";
import { configSchema } from "../../../components/config/schema";
import { CONFIG_KEYS } from "../../../components/config/load";

const ROOT = path.resolve(__dirname, "../../..");
const README = readFileSync(path.join(ROOT, "README.md"), "utf8");
const TEMPLATE = (parse(readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as { template: { config: Record<string, { description: string }> } }).template.config;

/** Field names of an object-like schema, through wrappers, unions, records and arrays. */
function fieldsOf(schema: z.ZodType): string[] {
    const def = (schema as unknown as { def: Record<string, unknown> & { type: string } }).def;
    switch (def.type) {
        case "object":
            return Object.entries((schema as z.ZodObject).shape).flatMap(([k, v]) => [k, ...fieldsOf(v as z.ZodType).map((f) => f)]);
        case "union":
            return [...new Set((def.options as z.ZodType[]).flatMap(fieldsOf))];
        case "record":
            return fieldsOf(def.valueType as z.ZodType);
        case "array":
            return fieldsOf(def.element as z.ZodType);
        case "optional":
        case "nullable":
        case "default":
        case "prefault":
        case "nonoptional":
            return fieldsOf(def.innerType as z.ZodType);
        case "pipe":
            return fieldsOf(def.in as z.ZodType);
        default:
            return [];
    }
}

const shape = (configSchema as unknown as { def: { in?: z.ZodObject } }).def.in?.shape ?? (configSchema as unknown as z.ZodObject).shape;
const documented = CONFIG_KEYS.filter((k) => k !== "generatedSecrets");

describe("configuration reference: README and Pulumi.yaml name every setting", () => {
    for (const key of documented) {
        const fields = [...new Set(fieldsOf(shape[key] as z.ZodType))];

        it(`README: every field of ${key}`, () => {
            const row = README.split("\n").find((l) => l.startsWith(`| \`${key}\` |`));
            assert.ok(row, `README has no table row for ${key}`);
            assert.deepEqual(fields.filter((f) => !row.includes(`\`${f}\``)), [], `README row of ${key} misses these settings`);
        });

        it(`Pulumi.yaml: every field of ${key}`, () => {
            const description = TEMPLATE[`onebox:${key}`]?.description;
            assert.ok(description, `Pulumi.yaml template.config has no onebox:${key}`);
            assert.deepEqual(fields.filter((f) => !new RegExp(`\\b${f}\\b`).test(description)), [], `Pulumi.yaml onebox:${key} misses these settings`);
        });
    }

    it("the field lists are read off the schema (the check can fail)", () => {
        assert.ok(fieldsOf(shape.host as z.ZodType).includes("hostKey"));
        assert.ok(fieldsOf(shape.backups as z.ZodType).includes("tables"));
        assert.ok(fieldsOf(shape.services as z.ZodType).includes("mountPath"));
    });
});
