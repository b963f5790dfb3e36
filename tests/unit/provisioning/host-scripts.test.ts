/**
 * The loader of the host scripts the steps install (read at call time, so a
 * missing script is a clear error, never a silently empty step).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultScriptsDir, loadHostScripts } from "../../../components/provisioning/host-scripts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-scripts-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(rel: string, content: string): void {
    fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
    fs.writeFileSync(path.join(tmp, rel), content);
}

test("missing required scripts are all named", () => {
    assert.throws(() => loadHostScripts(tmp), /host scripts missing under .*: bootstrap\/bootstrap\.sh, deploy\/deploy\.sh/);
});

test("reads bootstrap.sh with the files it ships, deploy.sh, and only the *.sh backup scripts", () => {
    write("bootstrap/bootstrap.sh", "#!/bin/bash\n");
    write("bootstrap/daemon.json", "{}\n");
    fs.mkdirSync(path.join(tmp, "bootstrap", "subdir"), { recursive: true });
    write("deploy/deploy.sh", "#!/bin/bash\necho deploy\n");
    write("backup/backup.sh", "b\n");
    write("backup/README.md", "docs\n");
    assert.deepEqual(loadHostScripts(tmp), {
        bootstrap: { "bootstrap.sh": "#!/bin/bash\n", "daemon.json": "{}\n" },
        deploy: "#!/bin/bash\necho deploy\n",
        backup: { "backup.sh": "b\n" },
        jobs: {},
    });
});

test("the default directory is the repository's scripts/host", () => {
    assert.equal(defaultScriptsDir(), path.resolve(__dirname, "../../../scripts/host"));
});
