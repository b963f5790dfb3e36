/**
 * Where the volumes of a stack live on the host, derived once: the bind mounts of each
 * service, the directories the deploy creates (mode and owner), and the directories the
 * nightly backup archives (BACKUP_DIRS). A stack volume mounted by several services is
 * one directory, created once and archived once.
 */
import type { ProvisioningConfig } from "../config/schema";
import { ownerOfUser, usesStackVolumes, volumeOwner } from "../config/volumes-schema";
import { sharedVolumePath, volumePath } from "./paths";

/** One bind mount of a volume into a service's container. */
export interface VolumeMount {
    hostPath: string;
    mountPath: string;
    readOnly: boolean;
}

/** One volume directory on the host. */
export interface VolumeDirectory {
    /** Volume name (the backup archive's name). */
    name: string;
    path: string;
    mode: string;
    /** uid:gid */
    owner: string;
    /** Archived by the nightly backup. */
    backup: boolean;
    /** Stack volume (shared directory) rather than a service's own. */
    shared: boolean;
}

/** The volume mounts of service NAME, in its declaration order. */
export function serviceMounts(config: ProvisioningConfig, dataDir: string, name: string): VolumeMount[] {
    const shared = usesStackVolumes(config);
    return config.services[name].volumes.map((v) => ({
        hostPath: shared ? sharedVolumePath(dataDir, v.name) : volumePath(dataDir, name, v.name),
        mountPath: v.mountPath,
        readOnly: shared && v.readOnly === true,
    }));
}

/**
 * Every volume directory of the stack, each once, sorted by path. A service's own volume
 * is 0750 and owned by the service's user (as before stack volumes existed); a stack volume
 * is 0770 and owned by its owner, so that services of its group can write too.
 */
export function volumeDirectories(config: ProvisioningConfig, dataDir: string): VolumeDirectory[] {
    if (usesStackVolumes(config)) {
        return Object.entries(config.volumes)
            .map(([name, v]) => ({
                name,
                path: sharedVolumePath(dataDir, name),
                mode: "0770",
                // volumeChecks refused a configuration without one owner.
                owner: volumeOwner(config, name) ?? "0:0",
                backup: v.backup,
                shared: true,
            }))
            .sort((a, b) => a.path.localeCompare(b.path));
    }
    // Services by name, each one's volumes in declaration order (as rendered before stack volumes).
    return Object.keys(config.services)
        .sort()
        .flatMap((s) => {
            const user = config.services[s].user;
            return config.services[s].volumes.map((v) => ({
                name: v.name,
                path: volumePath(dataDir, s, v.name),
                mode: "0750",
                owner: user === null ? "root:root" : ownerOfUser(user),
                backup: v.backup ?? true,
                shared: false,
            }));
        });
}

/** The directories the nightly backup archives (BACKUP_DIRS), each once. */
export function backupDirectories(config: ProvisioningConfig, dataDir: string): string[] {
    return volumeDirectories(config, dataDir)
        .filter((d) => d.backup)
        .map((d) => d.path);
}
