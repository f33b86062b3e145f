module gefyra.dev/carrier

go 1.26
