// ESLint 9 flat config: typescript-eslint (type-aware) plus Pulumi's rules as errors.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import pulumi from "@pulumi/eslint-plugin";

export default tseslint.config(
    // examples/NNN-*/index.ts re-export the program (type-checked by `npm run typecheck`); their tsconfig.json,
    // which Pulumi needs, would give the project service one more copy of the whole program each.
    { ignores: ["node_modules/", ".scratch/", "out/", "dist/", "**/*.mjs", "tests/fixtures/lint/", "examples/???-*/"] },
    js.configs.recommended,
    ...tseslint.configs.recommendedTypeChecked,
    {
        languageOptions: {
            parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
        },
        plugins: { "@pulumi": pulumi },
        rules: {
            "@pulumi/no-output-in-template-literal": "error",
            "@pulumi/no-output-instance-in-template-literal": "error",
            "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
            // node:test's describe/it return promises the runner itself awaits.
            "@typescript-eslint/no-floating-promises": [
                "error",
                { allowForKnownSafeCalls: [{ from: "package", package: "node:test", name: ["describe", "it", "test", "before", "after", "beforeEach", "afterEach", "suite"] }] },
            ],
        },
    },
    // Plain JavaScript helpers (e.g. the runtime-load check) are outside the TS project.
    {
        files: ["**/*.js"],
        ...tseslint.configs.disableTypeChecked,
        languageOptions: {
            sourceType: "commonjs",
            parserOptions: { projectService: false, project: false },
            globals: { require: "readonly", process: "readonly", __dirname: "readonly", setTimeout: "readonly" },
        },
        rules: {
            ...tseslint.configs.disableTypeChecked.rules,
            "@typescript-eslint/no-require-imports": "off",
            "@pulumi/no-output-in-template-literal": "off",
            "@pulumi/no-output-instance-in-template-literal": "off",
        },
    },
);
