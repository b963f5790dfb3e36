// Package provider re-exports the upstream tls provider for the bridge's
// test provider main (which imports this path). The upstream keeps it in an
// internal package; Go allows the import here because this path sits under
// the upstream module's own prefix.
package provider

import (
	fwprovider "github.com/hashicorp/terraform-plugin-framework/provider"
	upstream "github.com/hashicorp/terraform-provider-tls/internal/provider"
)

// New returns the upstream Terraform tls provider.
func New() fwprovider.Provider { return upstream.New() }
